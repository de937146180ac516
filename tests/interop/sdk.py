"""Microsoft's Python SDK (azure-storage-blob) as the other side of interop tests.

Usage (connection string in AZURE_STORAGE_CONNECTION_STRING):
  sdk.py write CONTAINER       -- writes a known set of blobs, prints their sha256 as JSON
  sdk.py read CONTAINER PREFIX -- prints {name: {"sha256", "size", "metadata", "md5"}} as JSON
  sdk.py sas CONTAINER [SECS]  -- prints a container SAS (read/write/list/delete/add/create),
                                 valid for SECS seconds (default 2 hours)
"""
import datetime
import hashlib
import json
import os
import sys

from azure.storage.blob import (BlobServiceClient, ContainerSasPermissions,
                                generate_container_sas)


def data(n, seed):
    out = bytearray()
    h = hashlib.sha256(str(seed).encode()).digest()
    while len(out) < n:
        out += h
        h = hashlib.sha256(h).digest()
    return bytes(out[:n])


def main():
    conn = os.environ["AZURE_STORAGE_CONNECTION_STRING"]
    svc = BlobServiceClient.from_connection_string(
        conn, max_single_put_size=1024 * 1024, max_block_size=1024 * 1024)
    cmd, container = sys.argv[1], sys.argv[2]
    c = svc.get_container_client(container)
    if cmd == "write":
        blobs = {
            "py/small.txt": (b"written by the python sdk\n",
                             {"owner": "1234", "group": "567", "permissions": "0600",
                              "modtime": "2021-06-01 12:00:00 +0000"}),
            "py/sub/large.bin": (data(3 * 1024 * 1024 + 5, 1),
                                 {"Owner": "0", "Permissions": "rwxr-x---",
                                  "mtime": "2022-02-02T02:02:02.5Z"}),
            "py/plain": (data(10, 2), {}),
            "py/emptydir": (b"", {"hdi_isfolder": "true", "permissions": "0700"}),
        }
        out = {}
        for name, (body, meta) in blobs.items():
            c.upload_blob(name, body, metadata=meta, overwrite=True)
            out[name] = hashlib.sha256(body).hexdigest()
        print(json.dumps(out))
    elif cmd == "read":
        prefix = sys.argv[3]
        out = {}
        for b in c.list_blobs(name_starts_with=prefix, include=["metadata"]):
            body = c.download_blob(b.name).readall()
            md5 = b.content_settings.content_md5
            out[b.name] = {"sha256": hashlib.sha256(body).hexdigest(), "size": b.size,
                           "metadata": b.metadata or {},
                           "md5": bytes(md5).hex() if md5 else None,
                           "md5_of_body": hashlib.md5(body).hexdigest()}
        print(json.dumps(out))
    elif cmd == "sas":
        parts = dict(p.split("=", 1) for p in conn.split(";") if "=" in p)
        sas = generate_container_sas(
            parts["AccountName"], container, account_key=parts["AccountKey"],
            permission=ContainerSasPermissions(read=True, write=True, delete=True, list=True,
                                               add=True, create=True),
            expiry=datetime.datetime.now(datetime.timezone.utc)
            + datetime.timedelta(seconds=int(sys.argv[3]) if len(sys.argv) > 3 else 7200))
        print(sas)
    else:
        sys.exit("unknown command " + cmd)


main()

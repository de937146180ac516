//! The Blob service client: a thin layer over `azure_storage_blob`'s low-level
//! calls (list page, properties, ranged download, put blob, stage block,
//! commit block list). No managed parallel transfer from the SDK is used: the
//! engine schedules every request itself.

use std::collections::HashMap;
use std::num::NonZero;
use std::sync::Arc;
use std::time::Duration;

use azure_core::error::ErrorKind;
use azure_core::http::{ClientOptions, NoFormat, RequestContent, RetryOptions, Url};
use azure_storage_blob::models::{
    BlobClientDownloadOptions, BlobContainerClientListBlobsOptions,
    BlockBlobClientCommitBlockListOptions, BlockBlobClientStageBlockOptions,
    BlockBlobClientUploadOptions, BlockListType, BlockLookupList, HttpRange, ListBlobsIncludeItem,
};
use azure_storage_blob::{BlobContainerClient, BlobContainerClientOptions};
use bytes::Bytes;
use futures::StreamExt;
use time::OffsetDateTime;

use super::Error;
use crate::auth::{Auth, RequestPolicy};
use crate::config::Target;
use crate::redact::redact;
use crate::retry::{retry, retry_with, RetryConfig, RetryCounter};

/// Default time without a byte before a request is abandoned and retried:
/// 60 s, the SDK's own default, long enough for a throttled service.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Time to establish a connection: 10 s.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One blob as listed.
#[derive(Debug, Clone)]
pub struct BlobEntry {
    /// Full blob name.
    pub name: String,
    /// Content length.
    pub size: u64,
    /// ETag, quoted as the service returns it.
    pub etag: Option<String>,
    /// Last-Modified.
    pub last_modified: Option<OffsetDateTime>,
    /// Whole-content MD5, when the service has one.
    pub content_md5: Option<Vec<u8>>,
    /// User metadata.
    pub metadata: HashMap<String, String>,
}

/// An error and its sources, joined: the SDK's own message is generic
/// ("failed to execute request"); the cause (refused, reset, DNS) is below.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = s.source();
    }
    out
}

/// Parses one List Blobs response body into entries and the continuation
/// marker. Pure, so it is fuzzed and benchmarked on its own.
pub fn parse_list_page(body: &[u8]) -> Result<(Vec<BlobEntry>, Option<String>), String> {
    let page: azure_storage_blob::models::ListBlobsResponse =
        azure_core::xml::from_xml(bytes::Bytes::copy_from_slice(body))
            .map_err(|e| format!("unreadable listing: {e}"))?;
    let entries = page
        .blob_items
        .into_iter()
        .filter_map(|item| {
            let props = item.properties.unwrap_or_default();
            Some(BlobEntry {
                name: item.name?,
                size: props.content_length.unwrap_or(0),
                etag: props.etag.map(|e| e.to_string()),
                last_modified: props.last_modified,
                content_md5: props.content_md5,
                metadata: item.metadata.and_then(|m| m.values).unwrap_or_default(),
            })
        })
        .collect();
    Ok((entries, page.next_marker.filter(|m| !m.is_empty())))
}

/// A client for one container.
pub struct BlobStore {
    client: BlobContainerClient,
    target: String,
    account: String,
    container: String,
    endpoint: String,
    retry: RetryConfig,
    retries: Arc<RetryCounter>,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.target)
    }
}

impl BlobStore {
    /// Builds a client for `target`'s container with the default read timeout.
    /// Makes no request.
    pub fn new(target: &Target, retries: Arc<RetryCounter>) -> Result<Self, Error> {
        Self::with_timeout(target, retries, DEFAULT_READ_TIMEOUT)
    }

    /// Builds a client whose requests fail (and are retried) when no byte
    /// arrives for `read_timeout`: a stalled connection never hangs a run.
    pub fn with_timeout(
        target: &Target,
        retries: Arc<RetryCounter>,
        read_timeout: Duration,
    ) -> Result<Self, Error> {
        let mut url: Url = target.endpoint.clone();
        {
            let mut segs = url.path_segments_mut().map_err(|_| Error::Other {
                op: "endpoint".into(),
                detail: format!("{} cannot hold a container path", target.endpoint),
            })?;
            segs.pop_if_empty().push(&target.container);
        }
        if let Auth::Sas(sas) = &target.auth {
            url.set_query(Some(sas));
        }
        let credential = match &target.auth {
            Auth::Token { credential, .. } => Some(Arc::clone(credential)),
            _ => None,
        };
        let http = reqwest::ClientBuilder::new()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(read_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Other {
                op: "http client".into(),
                detail: e.to_string(),
            })?;
        let options = BlobContainerClientOptions {
            client_options: ClientOptions {
                per_try_policies: vec![Arc::new(RequestPolicy::new(&target.auth))],
                retry: RetryOptions::none(),
                transport: Some(azure_core::http::Transport::new(Arc::new(http))),
                ..Default::default()
            },
            ..Default::default()
        };
        let client =
            BlobContainerClient::new(url, credential, Some(options)).map_err(|e| Error::Other {
                op: "client".into(),
                detail: redact(&e.to_string()),
            })?;
        let mut endpoint = target.endpoint.clone();
        endpoint.set_query(None);
        Ok(BlobStore {
            client,
            target: target.display_container(),
            account: target.account.clone(),
            container: target.container.clone(),
            endpoint: endpoint.to_string(),
            retry: RetryConfig::default(),
            retries,
        })
    }

    /// `account 'a', container 'c'`, for messages.
    pub fn describe(&self) -> &str {
        &self.target
    }

    /// The run-wide retry counter.
    pub fn retries(&self) -> &RetryCounter {
        &self.retries
    }

    fn classify(&self, op: &str, name: Option<&str>, e: azure_core::Error) -> Error {
        match e.kind() {
            ErrorKind::HttpResponse {
                status,
                error_code,
                raw_response,
            } => {
                let code = error_code.clone().unwrap_or_default();
                let status = u16::from(*status);
                match status {
                    404 if code == "ContainerNotFound" || name.is_none() => {
                        Error::ContainerNotFound {
                            account: self.account.clone(),
                            container: self.container.clone(),
                        }
                    }
                    404 => Error::NotFound {
                        name: name.unwrap_or_default().to_string(),
                    },
                    401 | 403 => Error::Auth {
                        target: self.target.clone(),
                        status,
                        code,
                    },
                    412 => Error::Changed {
                        name: name.unwrap_or_default().to_string(),
                    },
                    408 | 429 | 500 | 502 | 503 | 504 => {
                        let retry_after = raw_response.as_ref().and_then(|r| {
                            r.headers()
                                .get_optional_str(&"retry-after".into())
                                .and_then(|v| v.trim().parse::<u64>().ok())
                                .map(Duration::from_secs)
                        });
                        Error::Transient {
                            op: format!("{op} {}", name.unwrap_or("")),
                            detail: format!("HTTP {status} {code}"),
                            retry_after,
                        }
                    }
                    _ => Error::Other {
                        op: format!("{op} {}", name.unwrap_or("")),
                        detail: format!("HTTP {status} {code}"),
                    },
                }
            }
            ErrorKind::Io | ErrorKind::Connection => {
                let detail = redact(&chain(&e));
                if detail.contains("onnection refused") || detail.contains("dns error") {
                    Error::Unreachable {
                        endpoint: self.endpoint.clone(),
                        detail,
                    }
                } else {
                    Error::Transient {
                        op: format!("{op} {}", name.unwrap_or("")),
                        detail,
                        retry_after: None,
                    }
                }
            }
            _ => Error::Other {
                op: format!("{op} {}", name.unwrap_or("")),
                detail: redact(&format!("{e}")),
            },
        }
    }

    /// Fetches one listing page of blobs under `prefix`, with metadata.
    /// Returns the entries and the continuation marker.
    pub async fn list_page(
        &self,
        prefix: &str,
        marker: Option<String>,
        max_results: Option<i32>,
    ) -> Result<(Vec<BlobEntry>, Option<String>), Error> {
        retry(&self.retry, &self.retries, "list", || {
            let marker = marker.clone();
            async move {
                let options = BlobContainerClientListBlobsOptions {
                    prefix: (!prefix.is_empty()).then(|| prefix.to_string()),
                    marker,
                    maxresults: max_results,
                    include: Some(vec![ListBlobsIncludeItem::Metadata]),
                    ..Default::default()
                };
                let pager = self
                    .client
                    .list_blobs(Some(options))
                    .map_err(|e| self.classify("list", None, e))?;
                let mut pages = pager.into_pages();
                let page = match pages.next().await {
                    Some(p) => p.map_err(|e| self.classify("list", None, e))?,
                    None => return Ok((Vec::new(), None)),
                };
                let body = page.into_body();
                parse_list_page(&body).map_err(|detail| Error::Other {
                    op: "list".into(),
                    detail,
                })
            }
        })
        .await
    }

    /// Streams every entry under `prefix`, page by page, into a bounded
    /// channel of `capacity` entries (a listing error ends the stream as its
    /// last item). The task stops when the receiver is dropped.
    pub fn stream_entries(
        self: &Arc<Self>,
        prefix: String,
        capacity: usize,
    ) -> (
        tokio::sync::mpsc::Receiver<Result<BlobEntry, Error>>,
        tokio::task::JoinHandle<()>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
        let store = Arc::clone(self);
        let task = tokio::spawn(async move {
            let mut marker = None;
            loop {
                match store.list_page(&prefix, marker.take(), None).await {
                    Ok((entries, next)) => {
                        for e in entries {
                            if tx.send(Ok(e)).await.is_err() {
                                return;
                            }
                        }
                        match next {
                            Some(m) => marker = Some(m),
                            None => return,
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
        });
        (rx, task)
    }

    /// Checks that the container exists and the credential works, with one
    /// cheap list call.
    pub async fn check_container(&self) -> Result<(), Error> {
        self.list_page("", None, Some(1)).await.map(|_| ())
    }

    /// Checks the container with one cheap call and returns the service's
    /// `Date` (for clock-skew checks).
    pub async fn server_date(&self) -> Result<Option<OffsetDateTime>, Error> {
        retry(
            &self.retry,
            &self.retries,
            "container properties",
            || async {
                let rsp = self
                    .client
                    .get_properties(None)
                    .await
                    .map_err(|e| self.classify("container properties", None, e))?;
                Ok(rsp
                    .headers()
                    .get_optional_str(&"date".into())
                    .and_then(|d| azure_core::time::parse_rfc7231(d).ok()))
            },
        )
        .await
    }

    /// Creates the container; an existing one is fine.
    pub async fn create_container(&self) -> Result<(), Error> {
        retry(&self.retry, &self.retries, "create container", || async {
            match self.client.create(None).await {
                Ok(_) => Ok(()),
                Err(e) if e.http_status().map(u16::from) == Some(409) => Ok(()),
                Err(e) => Err(self.classify("create container", Some(""), e)),
            }
        })
        .await
    }

    /// Properties of one blob, or `None` when it does not exist.
    pub async fn head(&self, name: &str) -> Result<Option<BlobEntry>, Error> {
        let blob = self.client.blob_client(name);
        let r = retry(&self.retry, &self.retries, "head", || async {
            blob.get_properties(None)
                .await
                .map_err(|e| self.classify("head", Some(name), e))
        })
        .await;
        let rsp = match r {
            Ok(r) => r,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let h = rsp.headers();
        let mut metadata = HashMap::new();
        for (k, v) in h.iter() {
            if let Some(key) = k.as_str().strip_prefix("x-ms-meta-") {
                metadata.insert(key.to_string(), v.as_str().to_string());
            }
        }
        use base64::Engine;
        Ok(Some(BlobEntry {
            name: name.to_string(),
            size: h
                .get_optional_str(&"content-length".into())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            etag: h.get_optional_string(&"etag".into()),
            last_modified: h
                .get_optional_str(&"last-modified".into())
                .and_then(|v| azure_core::time::parse_rfc7231(v).ok()),
            content_md5: h
                .get_optional_str(&"content-md5".into())
                .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok()),
            metadata,
        }))
    }

    /// Fills `bufs`, one after the other, with the bytes at `offset` (one
    /// request for all of them), checking the ETag when given. The buffers
    /// come back in every case, so the caller can reuse them.
    pub async fn get_range_into<B>(
        &self,
        name: &str,
        offset: u64,
        bufs: Vec<B>,
        etag: Option<&str>,
    ) -> (Vec<B>, Result<(), Error>)
    where
        B: std::ops::DerefMut<Target = [u8]> + Send,
    {
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        if len == 0 {
            return (bufs, Ok(()));
        }
        let blob = self.client.blob_client(name);
        retry_with(&self.retry, &self.retries, "get", bufs, |mut bufs| {
            let blob = &blob;
            async move {
                let options = BlobClientDownloadOptions {
                    range: Some(HttpRange::new(offset, len as u64)),
                    parallel: NonZero::new(1),
                    partition_size: NonZero::new(len),
                    if_match: etag.map(|e| e.to_string().into()),
                    ..Default::default()
                };
                let mut body = match blob.download(Some(options)).await {
                    Ok(r) => r.body,
                    Err(e) => return (bufs, Err(self.classify("get", Some(name), e))),
                };
                let (mut which, mut at, mut got) = (0usize, 0usize, 0usize);
                while let Some(chunk) = body.next().await {
                    let mut chunk = match chunk {
                        Ok(c) => c,
                        Err(e) => return (bufs, Err(self.classify("get body", Some(name), e))),
                    };
                    while !chunk.is_empty() {
                        let Some(buf) = bufs.get_mut(which) else {
                            // More bytes than asked for.
                            got = len + 1;
                            break;
                        };
                        let n = (buf.len() - at).min(chunk.len());
                        buf[at..at + n].copy_from_slice(&chunk[..n]);
                        let _ = chunk.split_to(n);
                        at += n;
                        got += n;
                        if at == buf.len() {
                            which += 1;
                            at = 0;
                        }
                    }
                }
                let result = if got == len {
                    Ok(())
                } else {
                    Err(Error::Transient {
                        op: format!("get {name}"),
                        detail: format!("body of {got} bytes where {len} were asked for"),
                        retry_after: None,
                    })
                };
                (bufs, result)
            }
        })
        .await
    }

    /// Uploads `data` as a whole block blob (Put Blob). `md5` is sent as the
    /// transactional Content-MD5 (verified by the service) and stored.
    pub async fn put_blob(
        &self,
        name: &str,
        data: Bytes,
        md5: [u8; 16],
        metadata: &HashMap<String, String>,
    ) -> Result<(), Error> {
        let blob = self.client.blob_client(name).block_blob_client();
        let len = data.len() as u64;
        retry(&self.retry, &self.retries, "put", || {
            let data = data.clone();
            let blob = &blob;
            async move {
                let options = BlockBlobClientUploadOptions {
                    blob_content_md5: Some(md5.to_vec()),
                    metadata: Some(metadata.clone()),
                    parallel: NonZero::new(1),
                    partition_size: NonZero::new(len.max(1)),
                    ..Default::default()
                };
                blob.upload(
                    <RequestContent<Bytes, NoFormat> as From<Bytes>>::from(data),
                    Some(options),
                )
                .await
                .map(|_| ())
                .map_err(|e| self.classify("put", Some(name), e))
            }
        })
        .await
    }

    /// Stages one block with a transactional Content-MD5.
    pub async fn stage_block(
        &self,
        name: &str,
        block_id: &[u8],
        data: Bytes,
        md5: [u8; 16],
    ) -> Result<(), Error> {
        let blob = self.client.blob_client(name).block_blob_client();
        let len = data.len() as u64;
        retry(&self.retry, &self.retries, "put block", || {
            let data = data.clone();
            let blob = &blob;
            async move {
                let options = BlockBlobClientStageBlockOptions {
                    transactional_content_md5: Some(md5.to_vec()),
                    ..Default::default()
                };
                blob.stage_block(
                    block_id,
                    len,
                    <RequestContent<Bytes, NoFormat> as From<Bytes>>::from(data),
                    Some(options),
                )
                .await
                .map(|_| ())
                .map_err(|e| self.classify("put block", Some(name), e))
            }
        })
        .await
    }

    /// The uncommitted blocks staged for `name`: id → size. Empty when the
    /// blob does not exist.
    pub async fn uncommitted_blocks(&self, name: &str) -> Result<HashMap<Vec<u8>, u64>, Error> {
        let blob = self.client.blob_client(name).block_blob_client();
        let r = retry(&self.retry, &self.retries, "get block list", || async {
            let rsp = blob
                .get_block_list(BlockListType::Uncommitted, None)
                .await
                .map_err(|e| self.classify("get block list", Some(name), e))?;
            rsp.into_model()
                .map_err(|e| self.classify("get block list", Some(name), e))
        })
        .await;
        let list = match r {
            Ok(l) => l,
            Err(Error::NotFound { .. }) => return Ok(HashMap::new()),
            Err(e) => return Err(e),
        };
        Ok(list
            .uncommitted_blocks
            .unwrap_or_default()
            .into_iter()
            .filter_map(|b| Some((b.name?, u64::try_from(b.size?).ok()?)))
            .collect())
    }

    /// Commits `block_ids` in order, with `metadata` and the whole-content MD5 if known.
    pub async fn commit_blocks(
        &self,
        name: &str,
        block_ids: &[Vec<u8>],
        metadata: &HashMap<String, String>,
    ) -> Result<(), Error> {
        let blob = self.client.blob_client(name).block_blob_client();
        retry(&self.retry, &self.retries, "put block list", || {
            let blob = &blob;
            async move {
                let list = BlockLookupList {
                    latest: Some(block_ids.to_vec()),
                    ..Default::default()
                };
                let content: RequestContent<BlockLookupList, _> =
                    list.try_into().map_err(|e: azure_core::Error| {
                        self.classify("put block list", Some(name), e)
                    })?;
                let options = BlockBlobClientCommitBlockListOptions {
                    metadata: Some(metadata.clone()),
                    ..Default::default()
                };
                blob.commit_block_list(content, Some(options))
                    .await
                    .map(|_| ())
                    .map_err(|e| self.classify("put block list", Some(name), e))
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::parse_list_page;

    const PAGE: &str = r#"<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="http://127.0.0.1:10000/devstoreaccount1" ContainerName="home"><Prefix>proj/</Prefix><MaxResults>5000</MaxResults><Blobs><Blob><Name>proj/a.txt</Name><Properties><Last-Modified>Fri, 27 Nov 2026 17:39:51 GMT</Last-Modified><Etag>0x8DB1</Etag><Content-Length>5</Content-Length><Content-MD5>XUFAKrxLKna5cZ2REBfFkg==</Content-MD5><BlobType>BlockBlob</BlobType></Properties><Metadata><owner>1000</owner><hdi_isfolder>true</hdi_isfolder></Metadata></Blob><Blob><Name>proj/b c</Name><Properties><Content-Length>0</Content-Length></Properties></Blob></Blobs><NextMarker>next-page</NextMarker></EnumerationResults>"#;

    #[test]
    fn parses_entries_metadata_and_marker() {
        let (entries, next) = parse_list_page(PAGE.as_bytes()).unwrap();
        assert_eq!(next.as_deref(), Some("next-page"));
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].name, "proj/a.txt");
        assert_eq!(entries[0].size, 5);
        assert_eq!(entries[0].metadata["owner"], "1000");
        assert_eq!(entries[0].content_md5.as_ref().map(Vec::len), Some(16));
        assert!(entries[0].last_modified.is_some());
        assert_eq!(entries[1].name, "proj/b c");
        assert!(parse_list_page(b"<not xml").is_err());
        let (none, end) = parse_list_page(
            b"<?xml version=\"1.0\"?><EnumerationResults><Blobs></Blobs><NextMarker/></EnumerationResults>",
        )
        .unwrap();
        assert!(none.is_empty() && end.is_none());
    }
}

//! The transport: one configured connection to the service (`Client`), its requests
//! with their deadlines, and what their answers and failures mean (`Reply`; the words
//! for a request that got no answer come from `cloudsync_protocol::transport`).

use super::*;

/// An answer of the server at `url` that breaks the protocol (a proxy's page, a
/// truncated body): `bad_response`, retryable.
pub(super) fn bad_response(url: &str, why: impl std::fmt::Display) -> Error {
    Error::Network {
        status: None,
        code: "bad_response".into(),
        message: format!("unexpected answer from {}: {why}", cloudsync_protocol::transport::shown(url)),
        retryable: true,
        retry_after: None,
    }
}

/// A request body of the protocol's type `T`.
pub(super) fn to_body<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Invalid(format!("encoding a request: {e}")))
}

/// One HTTP exchange's outcome.
pub(super) struct Reply {
    /// What was requested (for messages; a signed URL's query is never shown).
    pub(super) url: String,
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
}

impl Reply {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body, read as the protocol's `T`.
    pub(super) fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| bad_response(&self.url, e))
    }

    /// Turns an error status into an error carrying the server's message.
    pub(super) fn check(self) -> Result<Reply> {
        if (200..300).contains(&self.status) {
            return Ok(self);
        }
        let (code, message) = match serde_json::from_slice::<ErrorBody>(&self.body) {
            Ok(b) => (b.error.code, b.error.message),
            // Not the service's error body: a proxy, or not a cloudsync server at all.
            Err(_) => (
                "http_error".to_string(),
                format!(
                    "{} (not a cloudsync error: is this URL a cloudsync service?)",
                    cloudsync_core::value::shown(&String::from_utf8_lossy(&self.body), 200)
                ),
            ),
        };
        Err(Error::Network {
            status: Some(self.status),
            code,
            message: format!("{} answered {}: {message}", cloudsync_protocol::transport::shown(&self.url), self.status),
            retryable: self.status == 408 || self.status == 429 || self.status >= 500,
            retry_after: self.header("retry-after").and_then(|v| v.trim().parse().ok()),
        })
    }
}

/// A configured connection to the service.
pub(super) struct Client {
    pub(super) base: String,
    pub(super) credential: String,
    pub(super) site: SiteId,
    pub(super) agent: ureq::Agent,
    /// Deadline of each request of this client.
    pub(super) timeout: Duration,
}

impl Client {
    pub(super) fn new(conn: &Connection, state: &ConnState, wait: Duration) -> Result<Client> {
        let base = setting(conn, URL)?.ok_or_else(|| {
            Error::arg("cloudsync_network", "no sync URL: call cloudsync_network_init(sync_url) first")
        })?;
        let credential = state.credential().ok_or_else(|| {
            Error::arg(
                "cloudsync_network",
                "no credential: call cloudsync_network_set_apikey(key) or cloudsync_network_set_token(jwt)",
            )
        })?;
        let site =
            meta::local_site(conn)?.ok_or_else(|| Error::arg("cloudsync_network", "call cloudsync_init first"))?;
        let agent = state
            .agent
            .get_or_init(|| {
                ureq::Agent::config_builder()
                    .timeout_connect(Some(CONNECT_TIMEOUT))
                    .http_status_as_error(false)
                    .user_agent(format!("cloudsync/{}", cloudsync_core::VERSION))
                    .build()
                    .new_agent()
            })
            .clone();
        Ok(Client { base, credential, site, agent, timeout: REQUEST_TIMEOUT + wait })
    }

    pub(super) fn site_hex(&self) -> String {
        self.site.to_string()
    }

    /// The outcome of a request to `url`: its answer, or why there was none
    /// ([`cloudsync_protocol::transport`]).
    pub(super) fn finish(
        url: &str,
        resp: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Reply> {
        let mut resp = resp.map_err(|e| {
            let (kind, message) = cloudsync_protocol::transport::describe(&e, url);
            Error::Network {
                status: None,
                code: kind.code().into(),
                message,
                retryable: kind.retryable(),
                retry_after: None,
            }
        })?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .map_err(|e| bad_response(url, format!("reading the answer failed: {e}")))?;
        Ok(Reply { url: url.to_string(), status, headers, body })
    }

    pub(super) fn auth(&self) -> String {
        format!("Bearer {}", self.credential)
    }

    /// A request with this client's deadline; `authed` adds the credential and the
    /// device's site id.
    pub(super) fn request<B>(&self, builder: ureq::RequestBuilder<B>, authed: bool) -> ureq::RequestBuilder<B> {
        let builder = builder.config().timeout_global(Some(self.timeout)).build();
        if authed {
            builder.header("Authorization", &self.auth()).header(header::SITE, &self.site_hex())
        } else {
            builder
        }
    }

    /// `POST {sync_url}/changes` with the positions the upload covers.
    pub(super) fn post_changes(
        &self,
        content_type: &str,
        body: &[u8],
        from: Checkpoint,
        to: Checkpoint,
    ) -> Result<Reply> {
        let url = format!("{}/changes", self.base);
        Self::finish(
            &url,
            self.request(self.agent.post(&url), true)
                .header("Content-Type", content_type)
                .header(header::FROM, &from.to_string())
                .header(header::TO, &to.to_string())
                .send(body),
        )
    }

    /// Uploads one chunk; `Ok` only once the server has durably accepted it up to `to`.
    pub(super) fn upload(&self, bytes: Vec<u8>, from: Checkpoint, to: Checkpoint) -> Result<Accepted> {
        let reply = if bytes.len() <= INLINE_LIMIT {
            self.post_changes(PAYLOAD_TYPE, &bytes, from, to)?
        } else {
            // Large payload: a signed URL of the payload store, then a reference.
            let slot = {
                use sha2::Digest;
                // The URL is issued for exactly these bytes: their size and hash.
                let announce = NewUpload {
                    bytes: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
                    sha256: hex::encode(sha2::Sha256::digest(&bytes)),
                };
                let announce = to_body(&announce)?;
                let url = format!("{}/uploads", self.base);
                Self::finish(
                    &url,
                    self.request(self.agent.post(&url), true)
                        .header("Content-Type", "application/json")
                        .send(&announce[..]),
                )?
            }
            .check()?
            .json::<UploadTicket>()?;
            Self::finish(
                &slot.upload_url,
                self.request(self.agent.put(&slot.upload_url), false)
                    .header("Content-Type", "application/octet-stream")
                    .send(&bytes[..]),
            )?
            .check()?;
            let reference = to_body(&UploadRef { object: slot.object })?;
            self.post_changes("application/json", &reference, from, to)?
        };
        let accepted: Accepted = reply.check()?.json()?;
        // The send checkpoint moves to what the server says it accepted: anything
        // else is not taken as sent.
        if Checkpoint::parse(&accepted.accepted) != Some(to) {
            let shown = cloudsync_core::value::shown(&accepted.accepted, 40);
            return Err(bad_response(
                &format!("{}/changes", self.base),
                format_args!("the server accepted the upload up to '{shown}', not '{to}': not counted as sent"),
            ));
        }
        Ok(accepted)
    }

    /// `GET {sync_url}/changes`: the next chunk after `after`, with only the tables and
    /// columns `declared` names when it is given ([`header::SCHEMA`]).
    pub(super) fn download(&self, after: Checkpoint, wait: Duration, declared: Option<&str>) -> Result<Reply> {
        let url = format!("{}/changes?site={}&after={after}&wait_ms={}", self.base, self.site_hex(), wait.as_millis());
        let mut req = self.request(self.agent.get(&url), true);
        if let Some(d) = declared {
            req = req.header(header::SCHEMA, d);
        }
        Self::finish(&url, req.call())?.check()
    }

    /// `POST {sync_url}/visibility`: which of `keys` of `table` name no central row this
    /// device's identity may read.
    pub(super) fn invisible(&self, table: &str, keys: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
        let body = VisibilityCheck { table: table.to_string(), keys: keys.iter().map(hex::encode).collect() };
        let body = to_body(&body)?;
        let url = format!("{}/visibility", self.base);
        let answer: Invisible = Self::finish(
            &url,
            self.request(self.agent.post(&url), true).header("Content-Type", "application/json").send(&body[..]),
        )?
        .check()?
        .json()?;
        answer
            .hidden
            .iter()
            .map(|h| hex::decode(h).map_err(|_| bad_response(&url, "a hidden key is not hex")))
            .collect()
    }

    /// `GET {sync_url}/schema`: the central synced tables as SQLite DDL.
    pub(super) fn schema(&self) -> Result<DeviceSchema> {
        let url = format!("{}/schema?site={}", self.base, self.site_hex());
        Self::finish(&url, self.request(self.agent.get(&url), true).call())?.check()?.json()
    }

    /// `PUT {sync_url}/receive`: tells the server applying downloads fails here
    /// (`failure`), or applies again.
    pub(super) fn report_receive(&self, failure: Option<ReceiveFailure>) -> Result<()> {
        let body = to_body(&ReceiveReport { failure })?;
        let url = format!("{}/receive", self.base);
        Self::finish(
            &url,
            self.request(self.agent.put(&url), true).header("Content-Type", "application/json").send(&body[..]),
        )?
        .check()?;
        Ok(())
    }

    pub(super) fn status(&self) -> Result<SyncStatus> {
        let url = format!("{}/status?site={}", self.base, self.site_hex());
        Self::finish(&url, self.request(self.agent.get(&url), true).call())?.check()?.json()
    }
}

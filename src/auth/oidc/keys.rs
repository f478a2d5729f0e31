//! An issuer's discovery document and signing keys, fetched when first
//! needed and kept. Keys are fetched again when a token names a key not
//! known (the provider rotated its keys), at most once per `JWKS_REFRESH_INTERVAL`
//! per issuer, one fetch at a time: tokens with made-up key ids cost no
//! more than one request to the provider in that interval.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::Refused;

/// How long a discovery document is kept.
const METADATA_TTL: Duration = Duration::from_secs(3600);

/// The largest document read from a provider (discovery, keys, tokens).
const MAX_DOCUMENT: usize = 256 * 1024;

/// Keys kept per issuer: providers publish a handful.
const MAX_KEYS: usize = 100;

/// The connect time limit for the provider (within `OIDC_HTTP_TIMEOUT`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
}

/// The discovery document as last fetched, and when a fetch last failed.
#[derive(Default)]
struct Discovered {
    document: Option<(Arc<Metadata>, Instant)>,
    failed: Option<Instant>,
}

#[derive(Clone)]
struct Key {
    key: DecodingKey,
    algorithm: Algorithm,
}

/// One issuer: its URL, and what was fetched from it.
pub struct Issuer {
    url: String,
    min_refresh: Duration,
    /// `OIDC_HTTP_TIMEOUT`: each exchange with the provider, whole.
    timeout: Duration,
    metadata: RwLock<Discovered>,
    /// Held while the discovery document is fetched: one fetch serves every
    /// request waiting for it (a flood of logins opens one connection).
    discovering: tokio::sync::Mutex<()>,
    keys: RwLock<Arc<HashMap<String, Key>>>,
    /// When keys were last fetched; held while fetching, so that one fetch
    /// serves every request waiting on it.
    fetched: tokio::sync::Mutex<Option<Instant>>,
}

impl Issuer {
    pub fn new(url: String, min_refresh: Duration, timeout: Duration) -> Self {
        Self {
            url,
            min_refresh,
            timeout,
            metadata: RwLock::default(),
            discovering: tokio::sync::Mutex::default(),
            keys: RwLock::default(),
            fetched: tokio::sync::Mutex::default(),
        }
    }

    /// The issuer, without a trailing `/`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The discovery document, fetched at most once per `METADATA_TTL`,
    /// one fetch at a time. After a failed fetch none is tried for
    /// `JWKS_REFRESH_INTERVAL` (the provider is down: requests are refused
    /// at once, not each with a connection of its own), and a document
    /// fetched before is used while the provider cannot give a new one.
    pub async fn metadata(&self) -> Result<Arc<Metadata>, Refused> {
        if let Some(document) = self.known_metadata()? {
            return Ok(document);
        }
        let _one = self.discovering.lock().await;
        if let Some(document) = self.known_metadata()? {
            return Ok(document);
        }
        let url = format!("{}/.well-known/openid-configuration", self.url);
        let fetched = get_json::<Metadata>(&url, self.timeout).await.and_then(|meta| {
            if meta.issuer.trim_end_matches('/') == self.url {
                Ok(Arc::new(meta))
            } else {
                Err(Refused::Provider(format!(
                    "its discovery document names another issuer, {:?}",
                    meta.issuer
                )))
            }
        });
        let mut state = self.metadata.write().unwrap_or_else(|e| e.into_inner());
        match fetched {
            Ok(document) => {
                *state =
                    Discovered { document: Some((document.clone(), Instant::now())), failed: None };
                Ok(document)
            }
            Err(err) => {
                tracing::warn!("the OpenID provider {} could not be read: {err}", self.url);
                state.failed = Some(Instant::now());
                match &state.document {
                    Some((stale, _)) => Ok(stale.clone()),
                    None => Err(err),
                }
            }
        }
    }

    /// The document if it is fresh; an error if a fetch failed lately
    /// (the stale document, if there is one, serves meanwhile).
    fn known_metadata(&self) -> Result<Option<Arc<Metadata>>, Refused> {
        let state = self.metadata.read().unwrap_or_else(|e| e.into_inner());
        let recent_failure = state.failed.is_some_and(|at| at.elapsed() < self.min_refresh);
        match &state.document {
            Some((document, at)) if at.elapsed() < METADATA_TTL || recent_failure => {
                Ok(Some(document.clone()))
            }
            None if recent_failure => {
                Err(Refused::Provider("it could not be reached just now; retry shortly".into()))
            }
            _ => Ok(None),
        }
    }

    /// The key that signed a token with this `kid` and `alg`: from the
    /// keys kept, else from a fresh fetch if none was made lately.
    pub async fn key(&self, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, Refused> {
        if let Some(key) = self.known(kid, alg)? {
            return Ok(key);
        }
        let mut fetched = self.fetched.lock().await;
        // Another request may have fetched them while this one waited.
        if let Some(key) = self.known(kid, alg)? {
            return Ok(key);
        }
        if fetched.is_some_and(|at| at.elapsed() < self.min_refresh) {
            return Err(Refused::Token("The token's signing key is not known.".into()));
        }
        *fetched = Some(Instant::now());
        let meta = self.metadata().await?;
        let set: JwkSet = get_json(&meta.jwks_uri, self.timeout).await?;
        let keys = usable(&set);
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        drop(fetched);
        self.known(kid, alg)?
            .ok_or_else(|| Refused::Token("The token's signing key is not known.".into()))
    }

    /// The kept key for `kid` (or the only one, for a token naming none),
    /// if it is there and is a key of `alg`.
    fn known(&self, kid: Option<&str>, alg: Algorithm) -> Result<Option<DecodingKey>, Refused> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner()).clone();
        let key = match kid {
            Some(kid) => keys.get(kid),
            None if keys.len() == 1 => keys.values().next(),
            None => None,
        };
        match key {
            None => Ok(None),
            Some(key) if key.algorithm == alg => Ok(Some(key.key.clone())),
            Some(_) => Err(Refused::Token("The token's algorithm is not its key's.".into())),
        }
    }
}

/// The signing keys of a set that this server can use, by key id (a key
/// without one as ""), each with the one algorithm it verifies.
fn usable(set: &JwkSet) -> HashMap<String, Key> {
    let mut keys = HashMap::new();
    for jwk in set.keys.iter().take(MAX_KEYS) {
        if jwk
            .common
            .public_key_use
            .as_ref()
            .is_some_and(|u| !matches!(u, jsonwebtoken::jwk::PublicKeyUse::Signature))
        {
            continue;
        }
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
            AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                Some(Algorithm::ES256)
            }
            AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
                Some(Algorithm::EdDSA)
            }
            _ => None,
        };
        // A key that says its algorithm is used for that one only; one of
        // the allow-list, and of the key's type.
        let said = jwk.common.key_algorithm.map(|alg| match alg {
            KeyAlgorithm::RS256 => Some(Algorithm::RS256),
            KeyAlgorithm::ES256 => Some(Algorithm::ES256),
            KeyAlgorithm::EdDSA => Some(Algorithm::EdDSA),
            _ => None,
        });
        let algorithm = match (family, said) {
            (Some(family), None) => family,
            (Some(family), Some(Some(said))) if said == family => family,
            _ => continue,
        };
        let Ok(key) = DecodingKey::from_jwk(jwk) else { continue };
        let kid = jwk.common.key_id.clone().unwrap_or_default();
        keys.insert(kid, Key { key, algorithm });
    }
    keys
}

/// TLS to providers: the vendored OpenSSL, with the system's CA bundle
/// (found where Debian and others keep it).
fn tls() -> Result<openssl::ssl::SslConnector, Refused> {
    static TLS: OnceLock<Result<openssl::ssl::SslConnector, String>> = OnceLock::new();
    TLS.get_or_init(|| {
        use openssl::ssl::{SslConnector, SslMethod};
        let mut builder = SslConnector::builder(SslMethod::tls()).map_err(|e| e.to_string())?;
        let probe = openssl_probe::probe();
        if let Some(file) = &probe.cert_file {
            builder.set_ca_file(file).map_err(|e| e.to_string())?;
        } else if let Some(dir) = &probe.cert_dir {
            builder.load_verify_locations(None, Some(dir)).map_err(|e| e.to_string())?;
        }
        Ok(builder.build())
    })
    .clone()
    .map_err(Refused::Provider)
}

fn client(timeout: Duration) -> Result<awc::Client, Refused> {
    let connect = CONNECT_TIMEOUT.min(timeout);
    let connector = awc::Connector::new().openssl(tls()?).timeout(connect);
    Ok(awc::Client::builder().connector(connector).timeout(timeout).disable_redirects().finish())
}

/// `exchange` within `timeout` (`OIDC_HTTP_TIMEOUT`), the answer's body included: a provider
/// that trickles its answer is given up on, not waited for.
async fn within<T>(
    url: &str,
    timeout: Duration,
    exchange: impl Future<Output = Result<T, Refused>>,
) -> Result<T, Refused> {
    tokio::time::timeout(timeout, exchange).await.unwrap_or_else(|_| {
        Err(Refused::Provider(format!("{url}: no whole answer within {timeout:?}")))
    })
}

async fn get_json<T: DeserializeOwned>(url: &str, timeout: Duration) -> Result<T, Refused> {
    within(url, timeout, async {
        let request = client(timeout)?.get(url).insert_header(("Accept", "application/json"));
        read_json(url, request.send().await).await
    })
    .await
}

impl Issuer {
    /// A form POST to this provider with the client's id and secret as
    /// HTTP Basic (`client_secret_basic`, each part form-encoded as RFC 6749
    /// says).
    pub async fn post_form<T: DeserializeOwned>(
        &self,
        url: &str,
        form: &[(&str, &str)],
        (id, secret): (&str, &str),
    ) -> Result<T, Refused> {
        let encode =
            |part: &str| form_urlencoded::byte_serialize(part.as_bytes()).collect::<String>();
        within(url, self.timeout, async {
            let answer = client(self.timeout)?
                .post(url)
                .basic_auth(encode(id), encode(secret))
                .insert_header(("Accept", "application/json"))
                .send_form(&form)
                .await;
            read_json(url, answer).await
        })
        .await
    }
}

async fn read_json<T: DeserializeOwned, S>(
    url: &str,
    answer: Result<awc::ClientResponse<S>, awc::error::SendRequestError>,
) -> Result<T, Refused>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, actix_web::error::PayloadError>> + Unpin,
{
    let mut answer = answer.map_err(|e| Refused::Provider(format!("{url}: {e}")))?;
    let body = answer
        .body()
        .limit(MAX_DOCUMENT)
        .await
        .map_err(|e| Refused::Provider(format!("{url}: {e}")))?;
    if !answer.status().is_success() {
        // The provider's OAuth error, which names the reason (e.g.
        // `invalid_grant` for a code of another client or a wrong PKCE
        // verifier); never the request, which holds the secret.
        #[derive(Deserialize)]
        struct OAuthError {
            error: String,
        }
        let said = serde_json::from_slice::<OAuthError>(&body).map(|e| e.error);
        return Err(Refused::Provider(format!(
            "{url} answered {}{}",
            answer.status(),
            said.map(|e| format!(" ({e})")).unwrap_or_default()
        )));
    }
    serde_json::from_slice(&body).map_err(|e| Refused::Provider(format!("{url}: {e}")))
}

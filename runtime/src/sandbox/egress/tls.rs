//! TLS for guests' https: the crypto provider, chosen explicitly (two are
//! compiled in, so rustls cannot pick one by itself and would panic), and
//! the certificates trusted: the Mozilla roots built in, plus the operator's
//! own CAs from `SLUICE_EXTRA_CA_CERTS`.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};
use std::path::Path;
use std::sync::Arc;

/// The environment variable naming a PEM file of extra CA certificates that
/// guests' https trusts (for servers with a private or self-signed CA).
pub const EXTRA_CA_ENV: &str = "SLUICE_EXTRA_CA_CERTS";

/// A TLS setting that cannot be used; the process should not start with it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsConfigError(String);

/// The crypto provider every TLS connection of this process uses.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process-wide provider, for any code that asks rustls for
/// the default. Without it, with both ring and aws-lc-rs compiled in, such
/// code panics. Idempotent.
pub fn install_crypto_provider() {
    // An error only says a provider is installed already, which is the goal.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The client configuration of guests' https, trusting the built-in roots
/// and the certificates of the PEM file `extra_ca` names.
pub fn client_config(extra_ca: Option<&Path>) -> Result<ClientConfig, TlsConfigError> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = extra_ca {
        let problem = |what: String| {
            TlsConfigError(format!(
                "{EXTRA_CA_ENV}={}: {what}; set it to a PEM file of the CA certificates guests' https should \
                 trust (-----BEGIN CERTIFICATE-----), or unset it",
                path.display()
            ))
        };
        let pem = std::fs::read(path).map_err(|err| problem(format!("cannot read it ({err})")))?;
        let certificates = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| problem(format!("it is not valid PEM ({err})")))?;
        if certificates.is_empty() {
            return Err(problem("it holds no certificate".into()));
        }
        for certificate in certificates {
            roots.add(certificate).map_err(|err| problem(format!("a certificate in it is not usable ({err})")))?;
        }
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| TlsConfigError(format!("cannot set up TLS: {err}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// [`client_config`] with the file `SLUICE_EXTRA_CA_CERTS` names, if set.
pub fn client_config_from_env() -> Result<ClientConfig, TlsConfigError> {
    let extra = std::env::var_os(EXTRA_CA_ENV).filter(|value| !value.is_empty());
    client_config(extra.as_deref().map(Path::new))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_extra_cas_the_built_in_roots_are_trusted() {
        assert!(client_config(None).is_ok());
    }

    #[test]
    fn an_unusable_ca_file_is_refused_naming_the_setting_and_the_file() {
        let folder = tempfile::tempdir().unwrap();
        let missing = folder.path().join("missing.pem");
        let err = client_config(Some(&missing)).unwrap_err().to_string();
        assert!(err.starts_with("SLUICE_EXTRA_CA_CERTS=") && err.contains("missing.pem: cannot read it"), "{err}");
        let empty = folder.path().join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").unwrap();
        assert!(client_config(Some(&empty)).unwrap_err().to_string().contains("holds no certificate"));
        let broken = folder.path().join("broken.pem");
        std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n").unwrap();
        let err = client_config(Some(&broken)).unwrap_err().to_string();
        assert!(err.contains("not valid PEM") || err.contains("not usable"), "{err}");
    }
}

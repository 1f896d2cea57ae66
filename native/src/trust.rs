//! CA certificates a user adds for a self-hosted control server (or DERP relay) with a private
//! CA. The crate verifies TLS against its compiled-in web roots only; our patch to `ts_tls_util`
//! (docs/upstream.md) lets us add to them. The addition is process-wide, as the crate's roots are.

use std::collections::BTreeSet;
use std::sync::Mutex;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::error::{Failure, Result};
use crate::sync::Recover;

/// Certificates already added, so devices connecting with the same file add nothing more.
static ADDED: Mutex<BTreeSet<Vec<u8>>> = Mutex::new(BTreeSet::new());

/// Trusts every certificate in the PEM file at `path`, beside the web roots, for TLS connections
/// made from now on in this process.
pub fn trust_ca_file(field: &str, path: &str) -> Result<()> {
    let pem = std::fs::read(path).map_err(|e| Failure::invalid(field, path, &format!("cannot be read ({e})")))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Failure::invalid(field, path, &format!("is not a PEM certificate file ({e})")))?;
    if certs.is_empty() {
        return Err(Failure::invalid(field, path, "holds no PEM certificate"));
    }
    let mut added = ADDED.recover();
    let new: Vec<CertificateDer<'static>> = certs.into_iter().filter(|cert| !added.contains(cert.as_ref())).collect();
    if new.is_empty() {
        return Ok(());
    }
    let ders: Vec<Vec<u8>> = new.iter().map(|cert| cert.to_vec()).collect();
    ts_tls_util::add_trust_anchors(new).map_err(|e| {
        Failure::invalid(field, path, &format!("holds a certificate that cannot be a trust anchor ({e})"))
    })?;
    added.extend(ders);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_or_empty_files_name_the_field() {
        let missing = trust_ca_file("caFile", "/nonexistent/ca.pem").unwrap_err();
        assert_eq!(missing.subject, "caFile");
        assert!(missing.detail.starts_with("cannot be read"), "{missing}");

        let dir = std::env::temp_dir().join(format!("trust-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").unwrap();
        let failure = trust_ca_file("caFile", empty.to_str().unwrap()).unwrap_err();
        assert!(failure.detail.contains("holds no PEM certificate"), "{failure}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}

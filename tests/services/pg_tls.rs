//! TLS to PostgreSQL as the URL asks (`sslmode`, `sslrootcert`), against the
//! test server with TLS on and a certificate of a throwaway CA: verified
//! connections work, a server the CA did not sign is refused, and
//! `earlykill migrate` connects with `sslmode=verify-full`.

use crate::common::postgres::{pg_server, TestDb};
use crate::common::projector::block_on;
use earlykill::projector;

/// Whether this connection of `url` is encrypted.
fn encrypted(url: &str) -> Result<bool, String> {
    block_on(async {
        let pool = projector::connect(url, 1).map_err(|e| e.to_string())?;
        let client = pool
            .get()
            .await
            .map_err(|e| projector::StoreError::from(e).to_string())?;
        let row = client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(row.get(0))
    })
}

#[test]
fn sslmode_and_sslrootcert_in_the_url_are_honoured() {
    let db = block_on(TestDb::create("tls"));
    let ca = pg_server::ca_file();
    let ca = ca.display();
    let verified = format!("{}?sslmode=verify-full&sslrootcert={ca}", db.url);
    assert_eq!(encrypted(&verified), Ok(true));
    let by_name = format!(
        "{}?sslmode=verify-full&sslrootcert={ca}",
        db.url.replace("127.0.0.1", "localhost")
    );
    assert_eq!(
        encrypted(&by_name),
        Ok(true),
        "the certificate names localhost too"
    );
    assert_eq!(encrypted(&format!("{}?sslmode=require", db.url)), Ok(true));
    assert_eq!(encrypted(&format!("{}?sslmode=disable", db.url)), Ok(false));

    // A CA that did not sign the server's certificate: refused.
    let other = std::env::temp_dir().join(format!("earlykill-other-ca-{}", std::process::id()));
    std::fs::create_dir_all(&other).unwrap();
    let status = std::process::Command::new("openssl")
        .current_dir(&other)
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
        ])
        .args(["-out", "ca.crt", "-days", "1", "-subj", "/CN=someone else"])
        .output()
        .expect("openssl");
    assert!(status.status.success());
    let wrong = format!(
        "{}?sslmode=verify-ca&sslrootcert={}",
        db.url,
        other.join("ca.crt").display()
    );
    let refused = encrypted(&wrong).expect_err("an unknown CA is refused");
    assert!(refused.to_lowercase().contains("certificate"), "{refused}");
    let _ = std::fs::remove_dir_all(other);

    // The binary: migrate over a verified connection.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_earlykill"))
        .args(["migrate", "--database-url", &verified])
        .output()
        .expect("run earlykill migrate");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    block_on(db.drop());
}

//! Two workers under one job name: connect refuses, naming both definitions.

use jobs::{worker, Jobs, Pg};

mod billing {
    use super::*;

    #[worker(enqueuer = Pg, queue = "t_dup", name = "Invoice")]
    pub async fn send_invoice(_id: u64) -> anyhow::Result<()> {
        Ok(())
    }
}

mod crm {
    use super::*;

    #[worker(enqueuer = Pg, queue = "t_dup", name = "Invoice")]
    pub async fn log_invoice(_id: u64) -> anyhow::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn duplicate_worker_names_fail_connect_with_both_locations() {
    let err = Jobs::builder()
        .postgres(jobs_tests::database_url())
        .connect()
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, jobs::Error::DuplicateWorker { .. }), "{text}");
    assert!(text.contains("`Invoice`"), "{text}");
    let file = file!();
    assert_eq!(
        text.matches(file).count(),
        2,
        "both locations named: {text}"
    );
    // The processor builder refuses the same pair.
    let _ = (billing::SendInvoice, crm::LogInvoice);
}

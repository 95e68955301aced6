//! Uniqueness under concurrency: racing registrations cannot create two live cards with one cardId
//! or one PAN (on PostgreSQL, where transactions run side by side, as on SQLite's single writer).

use crate::support::{TestApp, assert_refused};
use cardplane_testkit::backend_tests;
use reqwest::StatusCode;

backend_tests! {
    async fn concurrent_registrations_cannot_break_uniqueness(db: TestDatabase) {
        let app = TestApp::builder(db.backend).start().await;
        let bank = app.bank("BANK000001").await;
        let pans = ["4111111111111111", "4012888888881881", "4222222222222", "4000056655665556", "4917610000000000", "4556737586899855", "4539578763621486", "4916338506082832"];
        // One cardId, many PANs, all at once: one wins, the rest are told the id is taken.
        let attempts = pans.iter().map(|pan| bank.register_card("same-id", "c1", "VISA_LIGHT", pan));
        let answers = futures_util::future::join_all(attempts).await;
        let won = answers.iter().filter(|a| a.0 == StatusCode::NO_CONTENT).count();
        assert_eq!(won, 1, "{answers:?}");
        for answer in answers.iter().filter(|a| a.0 != StatusCode::NO_CONTENT) {
            assert_refused(answer, StatusCode::CONFLICT, "CARD_ID_IN_USE", "cardId same-id is in use");
        }
        // One PAN, many cardIds, all at once: one wins, the rest are told the PAN is registered.
        let ids: Vec<String> = (0..8).map(|i| format!("pan-race-{i}")).collect();
        let attempts = ids.iter().map(|id| bank.register_card(id, "c1", "MC_LIGHT", "5555555555554444"));
        let answers = futures_util::future::join_all(attempts).await;
        assert_eq!(answers.iter().filter(|a| a.0 == StatusCode::NO_CONTENT).count(), 1, "{answers:?}");
        for answer in answers.iter().filter(|a| a.0 != StatusCode::NO_CONTENT) {
            assert_refused(answer, StatusCode::CONFLICT, "PAN_ALREADY_REGISTERED", "this PAN");
        }
        let registered = bank.notifications().await.len();
        assert_eq!(registered, 2, "one REGISTER per winner");
        app.stop().await;
    }
}

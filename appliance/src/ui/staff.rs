//! The `staff.*` RPC methods as the appliance calls them.
//!
//! The types are defined once in `kakanai_protocol::staff` (and the resident lookup
//! in `kakanai_protocol::residents`), shared with the control plane. Passwords and
//! session tokens are [`Secret`]s: never shown by `Debug`.

pub use kakanai_protocol::residents::{
    CandidateView as Candidate, LookupCard, LookupCardRequest, LookupCardResponse,
};
pub use kakanai_protocol::staff::{
    ChangePassword, ChangePasswordRequest, ChangePasswordResponse, Login, LoginRequest,
    LoginResponse, Logout, LogoutRequest, LogoutResponse, Secret, Whoami, WhoamiRequest,
    WhoamiResponse,
};

#[cfg(test)]
mod tests {
    use super::*;
    use ciborium::Value;

    fn t(s: &str) -> Value {
        Value::Text(s.into())
    }

    #[test]
    fn a_lookup_answer_in_the_control_planes_shape_decodes() {
        let resident = Value::Map(vec![
            (t("atena"), t("000123")),
            (t("household"), t("h1")),
            (t("name"), t("見本　花子")),
            (t("kana"), t("ミホン　ハナコ")),
            (t("birth_date"), t("1985-04-01")),
            (t("sex"), t("2")),
            (t("relation"), t("世帯主")),
            (t("machiaza"), t("001")),
            (t("address"), t("架空県見本市本町１丁目２番３号")),
            (t("status"), t("在住")),
        ]);
        let answer = Value::Map(vec![
            (t("exact"), Value::Bool(true)),
            (
                t("candidates"),
                Value::Array(vec![Value::Map(vec![
                    (t("resident"), resident),
                    (t("reason"), t("氏名・生年月日・住所が一致")),
                    (t("matched"), Value::Array(vec![t("name")])),
                ])]),
            ),
        ]);
        let r: LookupCardResponse = answer.deserialized().unwrap();
        assert!(r.exact);
        assert_eq!(r.candidates[0].resident.atena, "000123");
        assert!(!format!("{:?}", r).contains("見本"));
    }
}

//! One synthetic example body of every [`Kind`], for documentation, tools
//! (`kakanai-inspect example`), the golden vectors and tests. The personal data in
//! them is invented (架空県見本市) and the 個人番号 is a made-up number with a valid
//! check digit.

use std::collections::BTreeMap;

use crate::catalogue::*;
use crate::envelope::MessageId;
use crate::personal::{CardFace, MyNumber, PersonalText, Sex};

/// The invented 個人番号 used by examples and tests.
pub const SAMPLE_MY_NUMBER: &str = "123456789018";

/// An example body of `kind`.
pub fn body(kind: Kind) -> Body {
    match kind {
        Kind::Presence => Body::Presence(Presence {
            state: PresenceState::Online,
            boot_counter: 12,
            software_version: "0.1.0".into(),
            devices: vec![
                DeviceInfo {
                    id: "Virtual PCD 00 00".into(),
                    class: DeviceClass::CardReader,
                    model: "vpcd".into(),
                    status: DeviceStatus::Ready,
                },
                DeviceInfo {
                    id: "printer-1".into(),
                    class: DeviceClass::Printer,
                    model: "ippeveprinter".into(),
                    status: DeviceStatus::Error {
                        code: "media-empty".into(),
                        detail: "用紙切れ".into(),
                    },
                },
            ],
        }),
        Kind::DeviceState => Body::DeviceState(DeviceStateReport {
            id: "printer-1".into(),
            class: DeviceClass::Printer,
            status: DeviceStatus::Busy,
        }),
        Kind::Ack => Body::Ack(Ack::of(
            MessageId::from_bytes([0x11; 16]),
            AckStatus::Rejected {
                reason: "expired".into(),
            },
        )),
        Kind::RpcRequest => Body::RpcRequest(RpcRequest {
            method: Ping::NAME.into(),
            params: ciborium::Value::Text("hello".into()),
            session: None,
        }),
        Kind::RpcResponse => Body::RpcResponse(RpcResponse {
            method: Ping::NAME.into(),
            outcome: RpcOutcome::Ok(ciborium::Value::Text("hello".into())),
        }),
        Kind::CardRead => Body::CardRead(CardRead {
            reader: "Virtual PCD 00 00".into(),
            card: CardType::MyNumberCard,
            outcome: Ok(CardFace {
                name: PersonalText::new("見本　太郎"),
                address: PersonalText::new("架空県見本市本町１丁目２番３号"),
                birth_date: PersonalText::new("19850715"),
                sex: Sex::Male,
                my_number: MyNumber::parse(SAMPLE_MY_NUMBER).ok(),
                has_private_use_chars: false,
            }),
        }),
        Kind::PrintJob => Body::PrintJob(PrintJob {
            job_id: "job-1".into(),
            title: "申請書 1/3".into(),
            media_type: "application/pdf".into(),
            size: 9,
            copies: 1,
            source: DocumentSource::Inline {
                data: b"%PDF-1.7\n".to_vec(),
                chunk: 0,
                chunks: 1,
            },
        }),
        Kind::PrintStatus => Body::PrintStatus(PrintStatus {
            job_id: "job-1".into(),
            state: PrintState::Completed { pages: Some(1) },
        }),
        Kind::Scan => Body::Scan(ScanResult {
            scanner: "scanner-1".into(),
            symbology: Symbology::Qr,
            data: b"KAKANAI:form:42".to_vec(),
        }),
        Kind::ConfigDesired => Body::ConfigDesired(ConfigDesired {
            version: 7,
            settings: settings(),
        }),
        Kind::ConfigReported => Body::ConfigReported(ConfigReported {
            version: 7,
            settings: settings(),
            rejected: BTreeMap::new(),
        }),
        Kind::Operation => Body::Operation(Operation::Logs {
            since_ms: Some(1_795_000_000_000),
            max_lines: 200,
        }),
        Kind::OperationResult => Body::OperationResult(OperationResult {
            command_id: MessageId::from_bytes([0x55; 16]),
            status: OperationStatus::Done,
            logs: vec![LogLine {
                time_ms: 1_795_000_000_123,
                level: "INFO".into(),
                target: "kakanai_appliance::link".into(),
                text: "link to the broker up".into(),
            }],
            truncated: false,
            message: "1 line".into(),
        }),
    }
}

fn settings() -> BTreeMap<String, ciborium::Value> {
    BTreeMap::from([
        (
            "printer.uri".to_owned(),
            ciborium::Value::Text("ipp://localhost:8631/ipp/print".into()),
        ),
        (
            "ui.idle_logout_s".to_owned(),
            ciborium::Value::Integer(300.into()),
        ),
    ])
}

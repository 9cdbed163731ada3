//! Sample data for previews and template checks: a synthetic household of four (見本
//! 太郎 and family), clearly marked 見本 so a preview is never mistaken for a real
//! application. Every member of the agreed data shape is filled, so a template that
//! renders with it renders with any data.

use serde_json::{json, Value};

use crate::template::FormTemplate;

fn person(name: &str, kana: &str, birth: &str, sex: &str, rel: &str, atena: &str) -> Value {
    json!({
        "name": name, "kana": kana, "birth_date": birth, "sex": sex,
        "relationship": rel, "address": "書無市本町一丁目2番3号 見本ハイツ101",
        "atena": atena
    })
}

/// The sample household: 世帯主, 妻, 長女 (8), 長男 (3).
pub fn family() -> Vec<Value> {
    vec![
        person(
            "見本 太郎",
            "ミホン タロウ",
            "1988-06-15",
            "男",
            "世帯主",
            "000000001",
        ),
        person(
            "見本 花子",
            "ミホン ハナコ",
            "1990-09-02",
            "女",
            "妻",
            "000000002",
        ),
        person(
            "見本 さくら",
            "ミホン サクラ",
            "2018-04-10",
            "女",
            "子",
            "000000003",
        ),
        person(
            "見本 大翔",
            "ミホン ヒロト",
            "2023-01-20",
            "男",
            "子",
            "000000004",
        ),
    ]
}

fn office(department: Option<&str>) -> Value {
    json!({"city": "書無市", "department": department, "counter": "2番 住民異動窓口"})
}

/// Sample data for a form: the agreed shape, every member present.
pub fn form_data(form: &FormTemplate) -> Value {
    let family = family();
    json!({
        "form": {"id": form.id},
        "application": {"number": "2026-000000", "created": "2026-11-27"},
        "office": office(form.department.as_deref()),
        "applicant": family[0],
        "subject": family[1],
        "household": {
            "head": family[0],
            "address": "書無市本町一丁目2番3号 見本ハイツ101",
            "members": family,
        },
        "event": {
            "kind": "move_in", "label": "転入", "date": "2026-11-20",
            "previous_address": "東京都千代田区見本町4丁目5番6号",
            "new_address": "書無市本町一丁目2番3号 見本ハイツ101"
        },
        "procedure": {
            "id": "sample", "name": form.title, "deadline": "2026-12-04",
            "department": form.department, "documents": ["本人確認書類", "マイナンバーが分かるもの"],
            "reason": "見本の理由（転入により手続きが必要です）"
        },
        "answers": {},
        "certificate": {
            "requester": family[0], "relationship": "本人", "purpose": "勤務先へ提出（見本）",
            "destination": "株式会社見本", "id_check": "マイナンバーカード",
            "items": [
                {"name": "住民票の写し", "options": ["世帯全員", "続柄"], "copies": 2, "fee": 300},
                {"name": "印鑑登録証明書", "options": [], "copies": 1, "fee": 300}
            ],
            "fee_total": 900
        }
    })
}

fn procedure(name: &str, dept: &str, counter: &str, deadline: Option<&str>, order: u32) -> Value {
    json!({
        "name": name, "department": dept, "counter": counter, "deadline": deadline,
        "documents": ["本人確認書類", "マイナンバーが分かるもの"],
        "reason": "転入されたため（見本）", "order": order
    })
}

/// Sample data for the procedure guide: the household's move-in visit.
pub fn guide_data() -> Value {
    let family = family();
    let mut people = Vec::new();
    for (i, member) in family.iter().enumerate() {
        let mut person = member.clone();
        let mut procedures = vec![procedure(
            "転入届",
            "市民課 住民記録係",
            "2番 住民異動窓口",
            Some("2026-12-04"),
            20,
        )];
        procedures.push(procedure(
            "国民健康保険 資格取得届",
            "保険年金課",
            "5番 国保・年金・医療助成窓口",
            Some("2026-12-04"),
            40,
        ));
        if i >= 2 {
            procedures.push(procedure(
                "こども医療費助成 資格登録",
                "保険年金課",
                "5番 国保・年金・医療助成窓口",
                None,
                41,
            ));
        }
        if let Some(map) = person.as_object_mut() {
            map.insert("procedures".into(), Value::Array(procedures));
        }
        people.push(person);
    }
    json!({
        "office": office(None),
        "household": {"head": family[0], "address": "書無市本町一丁目2番3号 見本ハイツ101", "members": family},
        "event": {"kind": "move_in", "label": "転入", "date": "2026-11-20"},
        "visit": {"date": "2026-11-27", "number": "V-000000"},
        "people": people
    })
}

/// The documents of a family of four's move-in visit: the guide and twelve forms
/// (form id, data), each with its own application number from `first_number` on.
pub fn move_in_visit(first_number: u32) -> (Value, Vec<(&'static str, Value)>) {
    let family = family();
    let plan: [(&str, usize, &str, &str); 12] = [
        ("JUKI-IDO", 0, "転入届", "市民課 住民記録係"),
        (
            "MNC-KENMEN",
            0,
            "マイナンバーカードの継続利用",
            "市民課 マイナンバーカード係",
        ),
        (
            "MNC-KENMEN",
            1,
            "マイナンバーカードの継続利用",
            "市民課 マイナンバーカード係",
        ),
        ("INKAN-TOROKU", 0, "印鑑登録（新規）", "市民課 住民記録係"),
        ("INKAN-TOROKU", 1, "印鑑登録（新規）", "市民課 住民記録係"),
        ("KOKUHO-SHUTOKU", 0, "国民健康保険 資格取得届", "保険年金課"),
        ("NENKIN-SHUBETSU", 1, "国民年金 種別変更届", "保険年金課"),
        ("IRYO-KODOMO", 2, "こども医療費助成 資格登録", "保険年金課"),
        ("JIDO-NINTEI", 2, "児童手当 認定請求", "こども家庭課"),
        (
            "GAKUMU-TENNYU",
            2,
            "転入学通知書の交付",
            "教育委員会 学務課",
        ),
        ("HOIKU-MOSHIKOMI", 3, "保育所等の入所申込", "保育幼稚園課"),
        ("SHOMEI-JUMIN", 0, "住民票の写し", "市民課 住民記録係"),
    ];
    let forms = plan
        .iter()
        .enumerate()
        .map(|(i, (form, subject, name, department))| {
            let data = json!({
                "form": {"id": form},
                "application": {"number": format!("2026-{:06}", first_number as usize + i), "created": "2026-11-27"},
                "office": {"city": "書無市", "department": department, "counter": "窓口"},
                "applicant": family[0],
                "subject": family[*subject],
                "household": {"head": family[0], "address": family[0]["address"], "members": family},
                "event": {"kind": "move_in", "label": "転入", "date": "2026-11-20",
                          "previous_address": "東京都千代田区見本町4丁目5番6号",
                          "new_address": family[0]["address"]},
                "procedure": {"id": form, "name": name, "deadline": "2026-12-04",
                              "department": department, "documents": ["本人確認書類"],
                              "reason": "転入されたため（見本）"},
                "answers": {},
                "certificate": {"requester": family[0], "relationship": "本人",
                    "purpose": "勤務先へ提出", "destination": "株式会社見本",
                    "id_check": "マイナンバーカード",
                    "items": [{"name": "住民票の写し", "options": ["世帯全員", "続柄"], "copies": 1, "fee": 300}],
                    "fee_total": 300}
            });
            (*form, data)
        })
        .collect();
    (guide_data(), forms)
}

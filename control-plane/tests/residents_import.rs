//! Import of a generated city and lookups, on SQLite and on a real PostgreSQL
//! (`kakanai-test-peers`): card lookups as a My Number card shows the data, 旧字体 and
//! IVS variants, prefix search, households; malformed files refused whole with line
//! numbers and nothing changed; idempotent re-import; changed files reported; 個人番号
//! sealed; tenant isolation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::path::Path;
use std::sync::OnceLock;

use kakanai_control_plane::model::TenantId;
use kakanai_control_plane::residents::csvfile::{decode, parse, Record, Table};
use kakanai_control_plane::residents::mapping::Encoding;
use kakanai_control_plane::residents::{
    by_atena, gen_city, household_of, import_dir, lookup_card, search_name, CardQuery, DataKind,
    ImportOptions, Mapping, MyNumberKey, Outcome,
};
use kakanai_control_plane::store::{Store, Tenant};
use kakanai_protocol::personal::Sex;

both_backends!("r_";
    import_then_card_lookup_prefix_and_household,
    variant_characters_match,
    reimport_is_idempotent_and_changes_are_reported,
    malformed_files_change_nothing,
    my_number_is_sealed_or_dropped,
    tenants_are_isolated,
);

const T0: i64 = 1_800_000_000_000;
const RESIDENTS: usize = 2_000;

/// The generated city, made once per test process (every case copies what it edits).
fn city() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        gen_city(dir.path(), 2025, RESIDENTS).unwrap();
        dir
    })
    .path()
}

fn tenant(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

async fn store_with(url: &str, tenants: &[&str]) -> Store {
    let store = Store::open(url).await.unwrap();
    for t in tenants {
        store
            .create_tenant(
                &Tenant {
                    id: tenant(t),
                    name: format!("{t} 市"),
                },
                T0,
            )
            .await
            .unwrap();
    }
    store
}

fn options() -> ImportOptions {
    ImportOptions {
        my_number_key: Some(MyNumberKey::new(&[42; 32])),
        now_ms: T0,
    }
}

fn jumin() -> Table {
    parse(
        &decode(
            &std::fs::read(city().join("jumin.csv")).unwrap(),
            Encoding::Utf8,
        )
        .unwrap(),
    )
    .unwrap()
}

fn field<'a>(t: &Table, r: &'a Record, name: &str) -> &'a str {
    &r.fields[t.header.iter().position(|h| h == name).unwrap()]
}

/// The card's face as the card shows it: U+3000 between family and given name (as the
/// file has it), full-width block numbers, the building after a U+3000, YYYYMMDD.
fn card_address(t: &Table, r: &Record) -> String {
    let full_width: String = field(t, r, "住所")
        .chars()
        .map(|c| {
            if c.is_ascii_digit() {
                char::from_u32(c as u32 + 0xFEE0).unwrap()
            } else {
                c
            }
        })
        .collect();
    match field(t, r, "方書") {
        "" => full_width,
        b => format!("{full_width}\u{3000}{b}"),
    }
}

fn card_birth(t: &Table, r: &Record) -> String {
    field(t, r, "生年月日").replace('-', "")
}

fn sex(t: &Table, r: &Record) -> Sex {
    if field(t, r, "性別") == "1" {
        Sex::Male
    } else {
        Sex::Female
    }
}

/// Copies the city into a new directory, with `edit` applied to one file's bytes.
fn edited(file: &str, edit: impl FnOnce(Vec<u8>) -> Vec<u8>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(city().join(file)).unwrap();
    std::fs::write(dir.path().join(file), edit(bytes)).unwrap();
    dir
}

fn lines_of(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split_inclusive(|b| *b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

async fn import_city(store: &Store, t: &TenantId) {
    let report = import_dir(store, t, city(), &Mapping::reference(), &options())
        .await
        .unwrap();
    assert!(report.all_applied(), "{report}");
    assert_eq!(report.files.len(), 16);
}

async fn import_then_card_lookup_prefix_and_household(url: String) {
    let store = store_with(&url, &["city-a"]).await;
    let a = tenant("city-a");
    import_city(&store, &a).await;
    let j = jumin();
    let counts = store.resident_counts(&a).await.unwrap();
    assert_eq!(counts.residents as usize, j.records.len());
    assert_eq!(counts.records.len(), 15, "{:?}", counts.records.keys());

    // Card lookups for a spread of living residents, some with a building (方書).
    let living: Vec<&Record> = j
        .records
        .iter()
        .filter(|r| field(&j, r, "状態") == "在住")
        .collect();
    let mut with_building = 0;
    for r in living.iter().step_by(97) {
        let (name, address, birth) = (field(&j, r, "氏名"), card_address(&j, r), card_birth(&j, r));
        with_building += usize::from(!field(&j, r, "方書").is_empty());
        let q = CardQuery {
            name,
            address: &address,
            birth_date: &birth,
            sex: Some(sex(&j, r)),
        };
        let found = lookup_card(&store, &a, &q).await.unwrap();
        assert!(found.exact, "{} candidates", found.candidates.len());
        let best = &found.candidates[0];
        assert_eq!(best.resident.atena, field(&j, r, "宛名番号"));
        assert_eq!(best.resident.name, name, "stored exactly");
        assert_eq!(best.reason, "氏名・生年月日・住所・性別が一致");
    }
    assert!(with_building > 0);

    // 「1-2-3」 notation and a wrong address: still a candidate, not exact.
    let r = living[5];
    let hyphen = field(&j, r, "住所")
        .replace("丁目", "-")
        .replace("番地", "-")
        .replace('番', "-")
        .replace('号', "");
    let birth = card_birth(&j, r);
    let q = CardQuery {
        name: field(&j, r, "氏名"),
        address: &hyphen,
        birth_date: &birth,
        sex: None,
    };
    let found = lookup_card(&store, &a, &q).await.unwrap();
    assert!(found.exact);
    let q = CardQuery {
        address: "見本県書無市どこか町99番地",
        ..q
    };
    let found = lookup_card(&store, &a, &q).await.unwrap();
    assert!(!found.exact);
    assert_eq!(found.candidates[0].resident.atena, field(&j, r, "宛名番号"));
    assert_eq!(
        found.candidates[0].reason,
        "氏名・生年月日が一致（住所は不一致）"
    );

    // Prefix search by reading (hiragana, half-width, with or without a space) and by
    // kanji with a birth date.
    let kana = field(&j, r, "氏名フリガナ");
    let family_kana: String = kana.split('\u{3000}').next().unwrap().to_owned();
    let hiragana: String = family_kana
        .chars()
        .map(|c| {
            if ('ァ'..='ヶ').contains(&c) {
                char::from_u32(c as u32 - 0x60).unwrap()
            } else {
                c
            }
        })
        .collect();
    let hits = search_name(&store, &a, &hiragana, None, 200).await.unwrap();
    assert!(
        hits.iter()
            .any(|c| c.resident.atena == field(&j, r, "宛名番号"))
            || hits.len() == 200
    );
    assert!(hits
        .iter()
        .all(|c| c.reason.starts_with("フリガナが前方一致")));
    let name = field(&j, r, "氏名");
    let family: String = name.split('\u{3000}').next().unwrap().to_owned();
    let hits = search_name(&store, &a, &family, Some(field(&j, r, "生年月日")), 50)
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].resident.atena, field(&j, r, "宛名番号"));
    assert_eq!(hits[0].reason, "氏名が前方一致・生年月日が一致");
    assert!(search_name(&store, &a, "", None, 10)
        .await
        .unwrap()
        .is_empty());

    // By 宛名番号, and the household: head first, the same members as the file.
    let atena = field(&j, r, "宛名番号");
    assert_eq!(
        by_atena(&store, &a, atena).await.unwrap().unwrap().atena,
        atena
    );
    let hh = household_of(&store, &a, atena).await.unwrap().unwrap();
    let number = field(&j, r, "世帯番号");
    let expected: Vec<&str> = j
        .records
        .iter()
        .filter(|x| field(&j, x, "世帯番号") == number)
        .map(|x| field(&j, x, "宛名番号"))
        .collect();
    assert_eq!(hh.members.len(), expected.len());
    assert_eq!(hh.members[0].relation, "世帯主");
    let h = hh.household.unwrap();
    assert_eq!(h.members as usize, expected.len());
    assert_eq!(h.head_atena.as_deref(), Some(hh.members[0].atena.as_str()));
    // Records attached to a person.
    let all = store.records_of(&a, atena, None).await.unwrap();
    assert!(all.iter().all(|x| x.atena.as_deref() == Some(atena)));
    assert!(store
        .record(
            &a,
            "address_master",
            &format!("{}|1", field(&j, r, "町字コード"))
        )
        .await
        .unwrap()
        .is_some());
}

async fn variant_characters_match(url: String) {
    let store = store_with(&url, &["city-a"]).await;
    let a = tenant("city-a");
    import_city(&store, &a).await;
    let j = jumin();
    let living = |r: &&Record| field(&j, r, "状態") == "在住";
    let mut checked = 0;
    // Stored with IVS / non-BMP / 旧字体, queried in the common form, and the reverse.
    for (stored, query) in [
        ("邉\u{E0111}", "辺"),
        ("𠮷", "吉"),
        ("髙", "高"),
        ("﨑", "崎"),
        ("高", "髙"),
        ("渡辺", "渡邊"),
    ] {
        let Some(r) = j
            .records
            .iter()
            .filter(living)
            .find(|r| field(&j, r, "氏名").contains(stored))
        else {
            continue;
        };
        let name = field(&j, r, "氏名").replace(stored, query);
        let (address, birth) = (card_address(&j, r), card_birth(&j, r));
        let q = CardQuery {
            name: &name,
            address: &address,
            birth_date: &birth,
            sex: Some(sex(&j, r)),
        };
        let found = lookup_card(&store, &a, &q).await.unwrap();
        assert!(found.exact, "{stored} → {query}");
        assert_eq!(
            found.candidates[0].resident.name,
            field(&j, r, "氏名"),
            "stored exactly"
        );
        checked += 1;
    }
    assert!(
        checked >= 3,
        "the generated city should hold variant names ({checked})"
    );
    // Half-width kana with an ASCII space finds a reading.
    let r = j.records.iter().find(living).unwrap();
    let kana = field(&j, r, "氏名フリガナ");
    let hits = search_name(&store, &a, &kana.replace('\u{3000}', " "), None, 200)
        .await
        .unwrap();
    assert!(hits
        .iter()
        .any(|c| c.resident.atena == field(&j, r, "宛名番号")));
}

async fn reimport_is_idempotent_and_changes_are_reported(url: String) {
    let store = store_with(&url, &["city-a"]).await;
    let a = tenant("city-a");
    import_city(&store, &a).await;
    let again = import_dir(&store, &a, city(), &Mapping::reference(), &options())
        .await
        .unwrap();
    for f in &again.files {
        assert_eq!(f.outcome, Outcome::Applied, "{f}");
        assert_eq!((f.added, f.changed, f.removed), (0, 0, 0), "{f}");
        assert_eq!(f.unchanged, f.rows);
    }

    // One resident moves within the city (住所, 番地 change), one row disappears.
    let j = jumin();
    let mover = &j.records[10];
    let old_address = field(&j, mover, "住所").to_owned();
    let new_address = format!("{old_address}改");
    let dir = edited("jumin.csv", |bytes| {
        let mut lines = lines_of(&bytes);
        let line = String::from_utf8(lines[mover.line - 1].clone()).unwrap();
        lines[mover.line - 1] = line.replacen(&old_address, &new_address, 1).into_bytes();
        lines.remove(20);
        lines.concat()
    });
    let report = import_dir(&store, &a, dir.path(), &Mapping::reference(), &options())
        .await
        .unwrap();
    let f = report.file(DataKind::Jumin).unwrap();
    assert_eq!(f.outcome, Outcome::Applied, "{f}");
    assert_eq!((f.added, f.changed, f.removed), (0, 1, 1), "{f}");
    assert_eq!(f.changes[0].key, field(&j, mover, "宛名番号"));
    assert_eq!(f.changes[0].columns, ["住所"]);
    let text = f.to_string();
    assert!(!text.contains(&old_address), "reports carry no addresses");
    let stored = by_atena(&store, &a, field(&j, mover, "宛名番号"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.address, new_address);
}

/// What a malformed-file case is: description, kind, directory, expected line, column
/// and a part of the reason.
type BadFile = (
    &'static str,
    DataKind,
    tempfile::TempDir,
    usize,
    Option<&'static str>,
    &'static str,
);

async fn malformed_files_change_nothing(url: String) {
    let store = store_with(&url, &["city-a"]).await;
    let a = tenant("city-a");
    import_city(&store, &a).await;
    let before = store.resident_counts(&a).await.unwrap();
    let reference = Mapping::reference();

    let cases: Vec<BadFile> = vec![
        (
            "CP932 file with an invalid byte",
            DataKind::Inkan,
            edited("inkan.csv", |b| {
                let mut lines = lines_of(&b);
                lines[4].splice(0..0, [0x82, 0xFF]);
                lines.concat()
            }),
            5,
            None,
            "CP932",
        ),
        (
            "missing column",
            DataKind::Jumin,
            edited("jumin.csv", |b| {
                let text = String::from_utf8(b).unwrap();
                text.replacen("生年月日", "誕生日", 1).into_bytes()
            }),
            1,
            Some("生年月日"),
            "missing column",
        ),
        (
            "bad date",
            DataKind::Kokuho,
            edited("kokuho.csv", |b| {
                let mut text = decode(&b, Encoding::Cp932).unwrap();
                let l3 = text.split("\r\n").nth(2).unwrap().to_owned();
                let mut fields: Vec<&str> = l3.split(',').collect();
                fields[3] = "20250230";
                text = text.replacen(&l3, &fields.join(","), 1);
                encoding_rs::SHIFT_JIS.encode(&text).0.into_owned()
            }),
            3,
            Some("資格取得日"),
            "not a date",
        ),
        (
            "duplicate key",
            DataKind::Jumin,
            edited("jumin.csv", |b| {
                let mut lines = lines_of(&b);
                let dup = lines[9].clone();
                lines.push(dup);
                lines.concat()
            }),
            RESIDENTS + RESIDENTS / 200 + 2,
            None,
            "duplicate key (first on line 10)",
        ),
        (
            "truncated last line",
            DataKind::Jumin,
            edited("jumin.csv", |b| b[..b.len() - 10].to_vec()),
            RESIDENTS + RESIDENTS / 200 + 1,
            None,
            "no line end",
        ),
        (
            "short line",
            DataKind::Kouki,
            edited("kouki.csv", |b| {
                let mut lines = lines_of(&b);
                let l = lines[7].clone();
                let cut = l.iter().position(|&c| c == b',').unwrap();
                lines[7] = [&l[..cut], b"\r\n".as_slice()].concat();
                lines.concat()
            }),
            8,
            None,
            "fields where the header has",
        ),
    ];
    for (what, kind, dir, line, column, reason) in cases {
        let report = import_dir(&store, &a, dir.path(), &reference, &options())
            .await
            .unwrap();
        let f = report.file(kind).unwrap();
        assert_eq!(f.outcome, Outcome::Rejected, "{what}: {f}");
        let r = &f.rejected[0];
        assert_eq!(r.line, line, "{what}: {f}");
        assert_eq!(r.column.as_deref(), column, "{what}: {f}");
        assert!(r.reason.contains(reason), "{what}: {f}");
        assert_eq!(
            store.resident_counts(&a).await.unwrap(),
            before,
            "{what} changed the store"
        );
    }
    // The data is still the imported one: a lookup still works.
    let j = jumin();
    let r = &j.records[3];
    assert!(by_atena(&store, &a, field(&j, r, "宛名番号"))
        .await
        .unwrap()
        .is_some());
}

async fn my_number_is_sealed_or_dropped(url: String) {
    let store = store_with(&url, &["city-a", "city-b"]).await;
    let (a, b) = (tenant("city-a"), tenant("city-b"));
    import_city(&store, &a).await;
    let j = jumin();
    let r = &j.records[0];
    let (atena, number) = (field(&j, r, "宛名番号"), field(&j, r, "個人番号"));
    let stored = by_atena(&store, &a, atena).await.unwrap().unwrap();
    assert!(
        !stored.data.contains(number),
        "個人番号 stored in plain text"
    );
    let data: serde_json::Value = serde_json::from_str(&stored.data).unwrap();
    let sealed = data["my_number"].as_str().unwrap();
    let key = MyNumberKey::new(&[42; 32]);
    assert_eq!(
        key.open("city-a", "jumin", atena, sealed).as_deref(),
        Some(number)
    );
    assert_eq!(key.open("city-b", "jumin", atena, sealed), None);

    // Without a key the column is checked and dropped.
    let opts = ImportOptions {
        my_number_key: None,
        now_ms: T0,
    };
    let report = import_dir(&store, &b, city(), &Mapping::reference(), &opts)
        .await
        .unwrap();
    let f = report.file(DataKind::Jumin).unwrap();
    assert!(f.my_number_dropped && f.outcome == Outcome::Applied, "{f}");
    let stored = by_atena(&store, &b, atena).await.unwrap().unwrap();
    assert!(!stored.data.contains("my_number") && !stored.data.contains(number));
    let t = store.record(&b, "tenshutsu", "x").await.unwrap();
    assert!(t.is_none());
}

async fn tenants_are_isolated(url: String) {
    let store = store_with(&url, &["city-a", "city-b"]).await;
    let (a, b) = (tenant("city-a"), tenant("city-b"));
    import_city(&store, &a).await;
    let j = jumin();
    let r = &j.records[1];
    let atena = field(&j, r, "宛名番号");
    assert!(by_atena(&store, &b, atena).await.unwrap().is_none());
    assert!(household_of(&store, &b, atena).await.unwrap().is_none());
    assert!(store.records_of(&b, atena, None).await.unwrap().is_empty());
    let (address, birth) = (card_address(&j, r), card_birth(&j, r));
    let q = CardQuery {
        name: field(&j, r, "氏名"),
        address: &address,
        birth_date: &birth,
        sex: None,
    };
    assert!(lookup_card(&store, &b, &q)
        .await
        .unwrap()
        .candidates
        .is_empty());
    assert_eq!(store.resident_counts(&b).await.unwrap().residents, 0);
    // Importing into B leaves A as it was.
    let before = store.resident_counts(&a).await.unwrap();
    let dir = edited("jumin.csv", |bytes| {
        let mut lines = lines_of(&bytes);
        lines.truncate(11);
        lines.concat()
    });
    import_dir(&store, &b, dir.path(), &Mapping::reference(), &options())
        .await
        .unwrap();
    assert_eq!(store.resident_counts(&b).await.unwrap().residents, 10);
    assert_eq!(store.resident_counts(&a).await.unwrap(), before);
}

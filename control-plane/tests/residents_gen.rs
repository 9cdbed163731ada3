//! The synthetic reference city: deterministic per seed, the reference proportions,
//! plausible rates for every kind, the documented encodings, and the names that must
//! survive exactly (IVS, non-BMP, 旧字体).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use kakanai_control_plane::residents::csvfile::{decode, parse, Table};
use kakanai_control_plane::residents::gen::{
    reference_date, REFERENCE_HOUSEHOLDS, REFERENCE_RESIDENTS,
};
use kakanai_control_plane::residents::mapping::Encoding;
use kakanai_control_plane::residents::{gen_city, DataKind, Mapping};
use kakanai_control_plane::rules::calendar::{age_on, Date};

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn table(dir: &Path, file: &str, enc: Encoding) -> Table {
    parse(&decode(&std::fs::read(dir.join(file)).unwrap(), enc).unwrap()).unwrap()
}

fn col(t: &Table, name: &str) -> usize {
    t.header.iter().position(|h| h == name).unwrap()
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    let sa = gen_city(a.path(), 42, 2_000).unwrap();
    let sb = gen_city(b.path(), 42, 2_000).unwrap();
    gen_city(c.path(), 43, 2_000).unwrap();
    assert_eq!(sa, sb);
    let (fa, fb, fc) = (files(a.path()), files(b.path()), files(c.path()));
    assert_eq!(fa.len(), 16, "one file per kind: {:?}", fa.keys());
    assert_eq!(fa, fb);
    for (name, bytes) in &fa {
        assert_ne!(
            Some(bytes),
            fc.get(name),
            "{name} did not change with the seed"
        );
    }
}

#[test]
fn reference_proportions_and_every_kind_in_the_reference_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let s = gen_city(dir.path(), 1, 2_000).unwrap();
    assert_eq!(s.residents, 2_000);
    let expected =
        (2_000.0 * REFERENCE_HOUSEHOLDS as f64 / REFERENCE_RESIDENTS as f64).round() as usize;
    assert_eq!(s.households, expected);
    let mapping = Mapping::reference();
    let names: BTreeSet<&str> = s.files.iter().map(|(f, _)| f.as_str()).collect();
    for kind in DataKind::ALL {
        let km = mapping.kind(kind).unwrap();
        assert!(names.contains(km.file.as_str()), "{kind}");
        // Every mapped column is in the generated header.
        let t = table(dir.path(), &km.file, km.encoding);
        for f in km.fields.values() {
            assert!(t.header.contains(&f.column), "{kind}: {}", f.column);
        }
    }
}

#[test]
fn encodings_are_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    gen_city(dir.path(), 1, 500).unwrap();
    let f = files(dir.path());
    for utf8_bom in ["jumin.csv", "jutogai.csv", "tenshutsu.csv"] {
        assert!(f[utf8_bom].starts_with(b"\xEF\xBB\xBF"), "{utf8_bom}");
    }
    assert!(std::str::from_utf8(&f["mynumber_card.csv"]).is_ok());
    assert!(!f["mynumber_card.csv"].starts_with(b"\xEF\xBB\xBF"));
    for cp932 in [
        "address_master.csv",
        "inkan.csv",
        "kokuho.csv",
        "kouki.csv",
        "kaigo.csv",
        "jidou_teate.csv",
    ] {
        assert!(
            std::str::from_utf8(&f[cp932]).is_err(),
            "{cp932} should be CP932"
        );
        let text = decode(&f[cp932], Encoding::Cp932).unwrap();
        assert!(text.ends_with("\r\n"));
    }
    // 﨑 and 髙 (IBM extensions) survive CP932 in the address master.
    let master = decode(&f["address_master.csv"], Encoding::Cp932).unwrap();
    assert!(master.contains("山﨑町") && master.contains("髙松町"));
}

#[test]
fn households_ages_and_rates_are_plausible() {
    let dir = tempfile::tempdir().unwrap();
    gen_city(dir.path(), 7, 20_000).unwrap();
    let j = table(dir.path(), "jumin.csv", Encoding::Utf8);
    let (st, bd, hh, rel, name) = (
        col(&j, "状態"),
        col(&j, "生年月日"),
        col(&j, "世帯番号"),
        col(&j, "続柄"),
        col(&j, "氏名"),
    );
    let living: Vec<_> = j
        .records
        .iter()
        .filter(|r| r.fields[st] == "在住")
        .collect();
    assert_eq!(living.len(), 20_000);
    assert!(j.records.len() > living.len(), "some 転出 / 死亡 rows");
    let age = |r: &&kakanai_control_plane::residents::csvfile::Record| {
        age_on(Date::parse(&r.fields[bd]).unwrap(), reference_date())
    };
    let n = living.len() as f64;
    let share = |f: &dyn Fn(i64) -> bool| living.iter().filter(|r| f(age(r))).count() as f64 / n;
    let over75 = share(&|a| a >= 75);
    let over65 = share(&|a| a >= 65);
    let children = share(&|a| a < 15);
    assert!((0.10..0.22).contains(&over75), "75+: {over75}");
    assert!((0.22..0.38).contains(&over65), "65+: {over65}");
    assert!((0.07..0.18).contains(&children), "0-14: {children}");

    let mut sizes: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &living {
        *sizes.entry(r.fields[hh].as_str()).or_default() += 1;
    }
    let singles = sizes.values().filter(|&&s| s == 1).count() as f64 / sizes.len() as f64;
    assert!(
        (0.35..0.55).contains(&singles),
        "one-person households: {singles}"
    );
    let relations: BTreeSet<&str> = living.iter().map(|r| r.fields[rel].as_str()).collect();
    for r in ["世帯主", "妻", "夫", "子", "母"] {
        assert!(relations.contains(r), "{r}");
    }
    // Names that must be stored exactly.
    let all_names: String = living.iter().map(|r| r.fields[name].as_str()).collect();
    assert!(all_names.contains("邉\u{E0111}"), "IVS");
    assert!(all_names.contains('𠮷'), "non-BMP");
    assert!(
        all_names.contains('髙') && all_names.contains('﨑'),
        "旧字体"
    );

    let rows = |file: &str| table(dir.path(), file, Encoding::Cp932).records.len() as f64 / n;
    let kokuho = rows("kokuho.csv");
    let kouki = rows("kouki.csv");
    assert!((0.15..0.28).contains(&kokuho), "国保 {kokuho}");
    assert!(
        (kouki - over75).abs() < 0.001,
        "後期 = everyone 75+: {kouki} vs {over75}"
    );
    assert!((0.03..0.25).contains(&rows("jidou_teate.csv")), "児童手当");
    let kaigo = table(dir.path(), "kaigo.csv", Encoding::Cp932);
    let level = col(&kaigo, "要介護度");
    let certified = kaigo
        .records
        .iter()
        .filter(|r| !r.fields[level].is_empty())
        .count() as f64;
    let certified_share = certified / kaigo.records.len() as f64;
    assert!(
        (0.08..0.30).contains(&certified_share),
        "認定 among 65+: {certified_share}"
    );
    assert!((0.4..0.7).contains(&rows("inkan.csv")), "印鑑登録");
    let cards = table(dir.path(), "mynumber_card.csv", Encoding::Utf8)
        .records
        .len() as f64
        / n;
    assert!((0.7..0.85).contains(&cards), "マイナンバーカード {cards}");
    for f in [
        "jidou_fuyou.csv",
        "fukushi_iryo.csv",
        "hoiku.csv",
        "juminzei.csv",
        "taino.csv",
        "shugaku_enjo.csv",
    ] {
        assert!(rows(f) > 0.0, "{f}");
    }
}

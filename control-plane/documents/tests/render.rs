//! What the resident gets on paper: every shipped form and the guide, read back with
//! poppler (an independent PDF reader).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{engine, pdffonts, pdftotext, person, resident_data, squeezed, ADDRESS};
use kakanai_documents::{DocumentRequest, RenderError};
use serde_json::json;

#[test]
fn every_shipped_form_prints_title_name_address_and_wareki_date_with_fonts_embedded() {
    let engine = engine();
    let set = engine.templates();
    let mut checked = 0;
    for form in set.forms() {
        let pdf = engine
            .render_form(&form.id, &resident_data(&form.id))
            .unwrap_or_else(|e| panic!("{}: {e}", form.id));
        assert!(pdf.bytes.starts_with(b"%PDF-"), "{}", form.id);
        assert!(pdf.pages >= 1);
        let text = squeezed(&pdftotext(&pdf.bytes));
        for expected in [
            squeezed(&form.title),
            "山田太郎".to_string(),
            squeezed(ADDRESS),
            "令和8年11月27日".to_string(),
            "2026-000123".to_string(),
            "書無市".to_string(),
        ] {
            assert!(
                text.contains(&expected),
                "{}: `{expected}` not printed",
                form.id
            );
        }
        let fonts = pdffonts(&pdf.bytes);
        for line in fonts.lines().skip(2) {
            // name type encoding emb sub uni ...: every font embedded.
            let cols: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(
                cols.get(cols.len() - 5),
                Some(&"yes"),
                "{}: not embedded: {line}",
                form.id
            );
        }
        assert!(fonts.contains("IPAexMincho"), "{}", form.id);
        assert!(
            fonts.contains("IPAmjMincho"),
            "{}: names in IPAmj明朝",
            form.id
        );
        checked += 1;
    }
    assert_eq!(checked, set.forms().count());
    assert!(
        checked >= 42,
        "38 procedure forms and 4 certificate request forms"
    );
}

#[test]
fn birth_dates_print_in_wareki_including_gannen() {
    let mut data = resident_data("KOKUHO-SHUTOKU");
    let pdf = engine().render_form("KOKUHO-SHUTOKU", &data).unwrap();
    let text = squeezed(&pdftotext(&pdf.bytes));
    assert!(text.contains("昭和55年4月1日"), "世帯主 born 1980-04-01");
    assert!(
        text.contains("令和元年5月1日"),
        "長女 born on the first day of 令和"
    );
    assert!(text.contains("令和8年11月20日"), "the move's date");
    assert!(!text.contains("1980-04-01"), "ISO dates are not printed");

    data["subject"]["birth_date"] = json!("1989-01-07");
    data["applicant"]["birth_date"] = json!("1989-01-07");
    let pdf = engine().render_form("KOKUHO-SHUTOKU", &data).unwrap();
    assert!(squeezed(&pdftotext(&pdf.bytes)).contains("昭和64年1月7日"));
}

#[test]
fn every_catalogue_form_and_certificate_has_a_template() {
    let (forms, certificates) = common::catalogue_ids();
    assert_eq!(forms.len(), 38, "the reference catalogue names 38 forms");
    let set = engine().templates();
    for id in &forms {
        assert!(
            set.form(id).is_some(),
            "no template for catalogue form {id}"
        );
    }
    for id in &certificates {
        assert!(
            set.form_for_certificate(id).is_some(),
            "no request form for certificate {id}"
        );
    }
}

#[test]
fn a_name_with_an_ivs_keeps_its_variation_selector_and_prints_in_ipamj() {
    // 渡邉 with 邉 U+9089 + VS U+E0111 (Moji_Joho), and a non-BMP 𠮷 (U+20BB7).
    let name = "渡\u{9089}\u{E0111} 𠮷子";
    let mut data = resident_data("KOKUHO-SHUTOKU");
    data["applicant"] = person(name, "ワタナベ ヨシコ", "1970-01-01", "女", "世帯主");
    let pdf = engine().render_form("KOKUHO-SHUTOKU", &data).unwrap();
    let text = pdftotext(&pdf.bytes);
    assert!(
        text.contains("\u{9089}\u{E0111}"),
        "the variation selector is lost in the PDF's text"
    );
    assert!(text.contains('𠮷'));
    assert!(pdffonts(&pdf.bytes).contains("IPAmjMincho"));

    // The selector picks a different glyph: the same name without it gives a
    // different PDF (another glyph in the IPAmj明朝 subset).
    let mut plain = data.clone();
    plain["applicant"]["name"] = json!("渡\u{9089} 𠮷子");
    let other = engine().render_form("KOKUHO-SHUTOKU", &plain).unwrap();
    assert_ne!(pdf.sha256, other.sha256);
    assert!(!pdftotext(&other.bytes).contains('\u{E0111}'));
}

#[test]
fn typst_markup_in_the_data_prints_literally() {
    let hostile = r#"#set page(width: 1cm) ]$x^2$\ *太字* _斜体_ #panic("x") // @ref <lbl> `raw`"#;
    let mut data = resident_data("KOKUHO-SHUTOKU");
    data["applicant"]["name"] = json!(format!("山田 {hostile}"));
    data["event"]["previous_address"] = json!(hostile);
    let pdf = engine().render_form("KOKUHO-SHUTOKU", &data).unwrap();
    assert_eq!(
        pdf.pages, 1,
        "the data did not change the page size or add pages"
    );
    let text = squeezed(&pdftotext(&pdf.bytes));
    for fragment in [
        "#setpage(width:1cm)",
        "]$x^2$\\",
        "*太字*",
        "_斜体_",
        "#panic(\"x\")",
        "<lbl>",
        "`raw`",
    ] {
        assert!(
            text.contains(fragment),
            "`{fragment}` not printed literally"
        );
    }
}

#[test]
fn absent_and_null_fields_print_blank_never_invented() {
    let data = json!({
        "form": {"id": "KOKUHO-SHUTOKU"},
        "application": {"number": null, "created": null},
        "office": {"city": "書無市"},
        "applicant": {"name": "山田 太郎", "kana": null, "birth_date": null, "sex": null},
        "household": {"members": []}
    });
    let pdf = engine().render_form("KOKUHO-SHUTOKU", &data).unwrap();
    let text = squeezed(&pdftotext(&pdf.bytes));
    assert!(text.contains("山田太郎"));
    assert!(
        text.contains("生年月日"),
        "the label stays for the resident to fill"
    );
    for invented in ["null", "none", "令和8", "昭和", "2026", "見本", "ヤマダ"] {
        assert!(
            !text.contains(invented),
            "`{invented}` printed from absent data"
        );
    }

    // An empty object renders every form, with nothing but the forms' own text.
    for form in engine().templates().forms() {
        let pdf = engine().render_form(&form.id, &json!({})).unwrap();
        let text = squeezed(&pdftotext(&pdf.bytes));
        assert!(text.contains(&squeezed(&form.title)), "{}", form.id);
        for invented in ["null", "none", "2026", "見本", "令和8"] {
            assert!(
                !text.contains(invented),
                "{}: `{invented}` printed from no data",
                form.id
            );
        }
    }
}

#[test]
fn data_that_is_not_an_object_or_names_no_template_is_refused() {
    assert!(matches!(
        engine().render_form("KOKUHO-SHUTOKU", &json!([1, 2])),
        Err(RenderError::NotAnObject)
    ));
    assert!(matches!(
        engine().render_form("NO-SUCH-FORM", &json!({})),
        Err(RenderError::UnknownForm(id)) if id == "NO-SUCH-FORM"
    ));
}

#[test]
fn the_same_data_renders_the_same_pdf() {
    let data = resident_data("JUKI-IDO");
    let a = engine().render_form("JUKI-IDO", &data).unwrap();
    let b = engine().render_form("JUKI-IDO", &data).unwrap();
    assert_eq!(a.sha256, b.sha256);
    assert_eq!(a.bytes, b.bytes);
    assert_eq!(a.sha256.len(), 64);
}

fn guide_data() -> serde_json::Value {
    let mut taro = person("山田 太郎", "ヤマダ タロウ", "1980-04-01", "男", "世帯主");
    let mut mei = person("山田 芽衣", "ヤマダ メイ", "2019-05-01", "女", "子");
    taro["procedures"] = json!([
        {"name": "国民健康保険 資格取得届", "department": "保険年金課", "counter": "5番窓口",
         "deadline": "2026-12-04", "documents": ["本人確認書類", "社会保険の資格喪失証明書"],
         "reason": "勤務先の健康保険に加入しないため", "order": 40},
        {"name": "転入届", "department": "市民課 住民記録係", "counter": "2番窓口",
         "deadline": "2026-12-04", "documents": ["転出証明書"], "reason": "転入したため", "order": 20}
    ]);
    mei["procedures"] = json!([
        {"name": "こども医療費助成 資格登録", "department": "保険年金課", "counter": "5番窓口",
         "deadline": null, "documents": [], "reason": "中学生以下のため", "order": 41},
        {"name": "転入学通知書の交付", "department": "教育委員会 学務課", "counter": "別館2階 学務課窓口",
         "deadline": "2026-12-01", "documents": ["在学証明書"], "reason": "小学生のため", "order": 100}
    ]);
    json!({
        "office": {"city": "書無市"},
        "household": {"head": taro.clone(), "address": ADDRESS},
        "event": {"kind": "move_in", "label": "転入", "date": "2026-11-20"},
        "visit": {"date": "2026-11-27", "number": "V-000042"},
        "people": [taro, mei]
    })
}

#[test]
fn the_guide_lists_every_procedure_per_person_in_visiting_order() {
    let pdf = engine().render_guide(&guide_data()).unwrap();
    let text = squeezed(&pdftotext(&pdf.bytes));
    for expected in [
        "手続きのご案内",
        "山田太郎",
        "山田芽衣",
        "国民健康保険資格取得届",
        "こども医療費助成資格登録",
        "転入学通知書の交付",
        "令和8年12月4日まで",
        "令和8年12月1日まで",
        "社会保険の資格喪失証明書",
        "勤務先の健康保険に加入しないため",
        "別館2階学務課窓口",
        "V-000042",
        "令和8年11月27日",
    ] {
        assert!(text.contains(expected), "guide lacks `{expected}`");
    }
    // Visiting order: 2番 (order 20) before 5番 (40, 41) before 学務課 (100).
    let order = text.find("まわる順番").expect("order section");
    let stops = &text[order..];
    let first = stops.find("2番窓口").unwrap();
    let second = stops.find("5番窓口").unwrap();
    let third = stops.find("別館2階").unwrap();
    assert!(first < second && second < third, "counters out of order");
    // No deadline known: the guide says to ask, it does not make one up.
    assert!(text.contains("窓口でご確認ください"));
    assert!(pdffonts(&pdf.bytes).contains("IPAexGothic"));
}

#[test]
fn a_bundle_is_one_pdf_with_every_document_in_order() {
    let guide = guide_data();
    let juki = resident_data("JUKI-IDO");
    let kokuho = resident_data("KOKUHO-SHUTOKU");
    let mut cert = resident_data("SHOMEI-JUMIN");
    cert["application"]["number"] = json!("2026-000124");
    let engine = engine();
    let singles: usize = [
        engine.render_guide(&guide).unwrap().pages,
        engine.render_form("JUKI-IDO", &juki).unwrap().pages,
        engine.render_form("KOKUHO-SHUTOKU", &kokuho).unwrap().pages,
        engine.render_form("SHOMEI-JUMIN", &cert).unwrap().pages,
    ]
    .iter()
    .sum();
    let bundle = engine
        .render_bundle(&[
            DocumentRequest::Guide(&guide),
            DocumentRequest::Form {
                id: "JUKI-IDO",
                data: &juki,
            },
            DocumentRequest::Form {
                id: "KOKUHO-SHUTOKU",
                data: &kokuho,
            },
            DocumentRequest::Form {
                id: "SHOMEI-JUMIN",
                data: &cert,
            },
        ])
        .unwrap();
    assert_eq!(
        bundle.pages, singles,
        "each document starts on its own page"
    );
    let text = squeezed(&pdftotext(&bundle.bytes));
    // Each document's title, in order, after the one before.
    let mut rest = text.as_str();
    for title in [
        "手続きのご案内",
        "住民異動届",
        "国民健康保険資格取得届",
        "住民票の写し等交付請求書",
        "2026-000124",
    ] {
        let at = rest
            .find(title)
            .unwrap_or_else(|| panic!("bundle lacks {title} after the previous document"));
        rest = &rest[at + title.len()..];
    }

    assert!(matches!(
        engine.render_bundle(&[DocumentRequest::Form {
            id: "NOPE",
            data: &juki
        }]),
        Err(RenderError::UnknownForm(_))
    ));
}

#[test]
fn previews_render_every_template_with_sample_data() {
    let engine = engine();
    for form in engine.templates().forms() {
        let pdf = engine.preview(&form.id).unwrap();
        let text = squeezed(&pdftotext(&pdf.bytes));
        assert!(
            text.contains("見本"),
            "{}: previews are marked 見本",
            form.id
        );
    }
    assert!(squeezed(&pdftotext(&engine.preview_guide().unwrap().bytes)).contains("見本"));
    assert!(matches!(
        engine.preview("NOPE"),
        Err(RenderError::UnknownForm(_))
    ));
}

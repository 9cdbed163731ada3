//! The synthetic reference city (参照用の架空の市): every one of the 16 data kinds as
//! the core systems would write them, from a seed, so development and tests never need
//! real resident data (domain/data-linkage.md, "Reference city data").
//!
//! Deterministic: the same seed and size give the same bytes on every platform and
//! every version of our dependencies, because the generator uses its own SplitMix64
//! and its own range reduction (a library's distributions may change between
//! releases). The city is 見本県書無市 (かかないし) as of [`reference_date`].
//!
//! Households follow the shape of a Japanese city: about 45 % one person (many of
//! them elderly living alone), couples, couples with children, single parents, an
//! elderly parent living with a grown-up child, three generations. About 1 % of
//! families carry a name with an IVS (渡邉 + U+E0111), a character outside the BMP
//! (𠮷) or a 旧字体 (髙, 﨑, 邊, 齋, 澤, 濱); a few percent are foreign residents.
//!
//! The 転出証明書情報 announce single people and whole families (2–5 people: same
//! 世帯主, 前住所, 転出予定日, and a 転出先 in this city's address master) moving in.
//! [`write_demo`] writes virtual My Number cards of demo people (a resident, the first
//! family of four moving in) for `kakanai-vcard`.
//!
//! Files and encodings (see [`super::mapping`] for the columns, `reference_mapping.toml`):
//! UTF-8 with BOM for the files that carry names (`jumin.csv`, `jutogai.csv`,
//! `tenshutsu.csv`), because names may hold characters Shift_JIS cannot; UTF-8
//! without BOM for `mynumber_card.csv`; CP932 (Shift_JIS, as most core systems
//! still write) for all the others. Lines end in CRLF.

use std::path::{Path, PathBuf};

use crate::rules::calendar::{age_on, Date};

/// The reference city's size (data-linkage.md).
pub const REFERENCE_RESIDENTS: usize = 157_508;
/// The reference city's households.
pub const REFERENCE_HOUSEHOLDS: usize = 79_873;
/// The prefecture of the synthetic city.
pub const CITY_PREFECTURE: &str = "見本県";
/// The synthetic city.
pub const CITY_NAME: &str = "書無市";

/// The day the generated data describes (ages, validity periods).
pub fn reference_date() -> Date {
    Date::new(2025, 4, 1).unwrap_or_else(|| Date::from_days(0))
}

/// Why the city could not be written. Carries file names and line numbers only.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// Writing a file failed.
    #[error("cannot write {file}: {source}")]
    Io {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A CP932 file would have held a character CP932 cannot encode (a generator bug:
    /// such text belongs in a UTF-8 file).
    #[error("{file} line {line}: a character cannot be encoded in CP932")]
    Unencodable {
        /// The file.
        file: String,
        /// The line.
        line: usize,
    },
    /// More households than residents, or none.
    #[error("invalid size: {0}")]
    Size(&'static str),
}

/// What [`gen_city`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenSummary {
    /// Residents living in the city (状態 在住).
    pub residents: usize,
    /// Households.
    pub households: usize,
    /// Each file written and its data rows (header excluded).
    pub files: Vec<(String, usize)>,
}

// ---------------------------------------------------------------------------------
// Random numbers

/// SplitMix64: tiny, fast, and ours, so the output never changes under us.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed ^ 0x6B61_6B61_6E61_6931)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`); the multiply-shift bias is below 2⁻³² here.
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1).max(1) as usize) as i64
    }

    fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64) / ((1u64 << 53) as f64) < p
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Index drawn with the given weights.
    fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u32 = weights.iter().sum();
        let mut x = self.below(total as usize) as u32;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

// ---------------------------------------------------------------------------------
// Name and place lists

struct Lists {
    male: Vec<(&'static str, &'static str)>,
    female: Vec<(&'static str, &'static str)>,
    family: Vec<(&'static str, &'static str)>,
    prefectures: Vec<(&'static str, &'static str)>,
    cities: Vec<(&'static str, &'static str)>,
    towns: Vec<(&'static str, &'static str)>,
}

const GIMEI: &str = include_str!("gimei/gimei.tsv");

fn lists() -> Lists {
    let mut l = Lists {
        male: Vec::new(),
        female: Vec::new(),
        family: Vec::new(),
        prefectures: Vec::new(),
        cities: Vec::new(),
        towns: Vec::new(),
    };
    for line in GIMEI.lines() {
        let mut parts = line.split('\t');
        let (Some(section), Some(kanji), Some(kana)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let list = match section {
            "m" => &mut l.male,
            "f" => &mut l.female,
            "l" => &mut l.family,
            "p" => &mut l.prefectures,
            "c" => &mut l.cities,
            "t" => &mut l.towns,
            _ => continue,
        };
        list.push((kanji, kana));
    }
    l
}

/// Family names written with an IVS, a non-BMP character or a 旧字体, with the
/// reading; stored exactly, matched folded.
const VARIANT_FAMILIES: &[(&str, &str)] = &[
    ("渡邉\u{E0111}", "ワタナベ"),
    ("𠮷田", "ヨシダ"),
    ("髙橋", "タカハシ"),
    ("山﨑", "ヤマザキ"),
    ("渡邊", "ワタナベ"),
    ("齋藤", "サイトウ"),
    ("澤田", "サワダ"),
    ("濱田", "ハマダ"),
    ("𠮷川", "ヨシカワ"),
    ("髙木", "タカギ"),
];

/// Foreign residents: nationality, typical status of residence, family and given
/// names in the alphabet with readings.
struct Foreign {
    nationality: &'static str,
    statuses: &'static [&'static str],
    family: &'static [(&'static str, &'static str)],
    given: &'static [(&'static str, &'static str)],
}

const FOREIGN: &[Foreign] = &[
    Foreign {
        nationality: "ベトナム",
        statuses: &["技能実習", "特定技能", "留学", "技術・人文知識・国際業務"],
        family: &[
            ("NGUYEN", "グエン"),
            ("TRAN", "チャン"),
            ("LE", "レ"),
            ("PHAM", "ファム"),
        ],
        given: &[
            ("VAN AN", "ヴァン　アン"),
            ("THI HOA", "ティ　ホア"),
            ("MINH", "ミン"),
            ("THI LAN", "ティ　ラン"),
        ],
    },
    Foreign {
        nationality: "中国",
        statuses: &["永住者", "留学", "家族滞在", "技術・人文知識・国際業務"],
        family: &[
            ("WANG", "ワン"),
            ("LI", "リー"),
            ("ZHANG", "チャン"),
            ("LIU", "リュウ"),
        ],
        given: &[
            ("WEI", "ウェイ"),
            ("FANG", "ファン"),
            ("JING", "ジン"),
            ("HAO", "ハオ"),
        ],
    },
    Foreign {
        nationality: "フィリピン",
        statuses: &["永住者", "定住者", "日本人の配偶者等"],
        family: &[
            ("SANTOS", "サントス"),
            ("REYES", "レイエス"),
            ("CRUZ", "クルス"),
        ],
        given: &[
            ("MARIA", "マリア"),
            ("JOSE", "ホセ"),
            ("ANGELICA", "アンジェリカ"),
        ],
    },
    Foreign {
        nationality: "ブラジル",
        statuses: &["定住者", "永住者"],
        family: &[
            ("SILVA", "シルバ"),
            ("OLIVEIRA", "オリベイラ"),
            ("SOUZA", "ソウザ"),
        ],
        given: &[
            ("LUCAS", "ルーカス"),
            ("ANA", "アナ"),
            ("GABRIEL", "ガブリエル"),
        ],
    },
    Foreign {
        nationality: "ネパール",
        statuses: &["留学", "技能", "家族滞在"],
        family: &[
            ("GURUNG", "グルン"),
            ("SHRESTHA", "シュレスタ"),
            ("RAI", "ライ"),
        ],
        given: &[("RAM", "ラム"), ("SITA", "シータ"), ("BIKASH", "ビカス")],
    },
];

const BUILDINGS: &[&str] = &[
    "サンハイツ",
    "グリーンコーポ",
    "メゾン見本",
    "パークマンション",
    "ハイツ書無",
    "シティコート",
];
const INSURED_TAXES: &[&str] = &["個人住民税", "固定資産税", "国民健康保険税", "軽自動車税"];
const CARE_LEVELS: &[&str] = &[
    "要支援1",
    "要支援2",
    "要介護1",
    "要介護2",
    "要介護3",
    "要介護4",
    "要介護5",
];

// ---------------------------------------------------------------------------------
// The city model

/// A 町字 (town or one 丁目 of it) with its block ranges.
struct Town {
    name: String,
    kana: String,
    /// 丁目 count; 0 = the town has no 丁目 (addresses are 「N番地M」).
    chome: u32,
    postal: String,
    elementary: usize,
    junior: usize,
}

/// Blocks 1..=30 of every 丁目, in three 自治会 ranges; the last range of every third
/// town belongs to the neighbouring school district (districts do not follow towns).
const BLOCKS: u32 = 30;
const RANGES: [(u32, u32); 3] = [(1, 10), (11, 20), (21, 30)];

#[derive(Clone, Copy)]
struct Addr {
    town: usize,
    chome: u32,
    ban: u32,
    go: u32,
    building: Option<(usize, u32)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Living,
    MovedOut,
    Dead,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Head,
    Spouse,
    Child,
    Parent,
}

struct Person {
    atena: u64,
    household: usize,
    family: (String, String),
    given: (&'static str, &'static str),
    birth: Date,
    male: bool,
    role: Role,
    relation: &'static str,
    moved_in: Option<Date>,
    former_family: Option<&'static str>,
    foreign: Option<(usize, &'static str)>,
    status: Status,
    changed_on: Option<Date>,
    my_number: String,
}

impl Person {
    fn age(&self) -> i64 {
        age_on(self.birth, reference_date())
    }

    fn name(&self) -> String {
        if self.foreign.is_some() {
            format!("{} {}", self.family.0, self.given.0)
        } else {
            format!("{}\u{3000}{}", self.family.0, self.given.0)
        }
    }

    fn kana(&self) -> String {
        format!("{}\u{3000}{}", self.family.1, self.given.1)
    }

    fn living(&self) -> bool {
        self.status == Status::Living
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Single,
    Couple,
    CoupleKids,
    SingleParent,
    ParentAndGrownChild,
    ThreeGenerations,
}

struct Household {
    number: u64,
    shape: Shape,
    members: Vec<usize>,
    addr: Addr,
}

/// A birth date such that the person is `age` on the reference date.
fn birth_for_age(rng: &mut Rng, age: i64) -> Date {
    let r = reference_date();
    let year = r.year() - age as i32;
    let end = Date::new(year, r.month(), r.day()).unwrap_or(r);
    let start = Date::new(year - 1, r.month(), r.day())
        .unwrap_or(r)
        .add_days(1);
    start.add_days(rng.below((end.to_days() - start.to_days() + 1) as usize) as i64)
}

fn my_number(rng: &mut Rng) -> String {
    let mut digits: Vec<u8> = (0..11).map(|_| b'0' + rng.below(10) as u8).collect();
    if digits[0] == b'0' {
        digits[0] = b'1';
    }
    let check = kakanai_protocol::personal::check_digit(&digits);
    digits.push(b'0' + check);
    String::from_utf8(digits).unwrap_or_default()
}

fn yyyymmdd(d: Date) -> String {
    format!("{:04}{:02}{:02}", d.year(), d.month(), d.day())
}

fn later(a: Date, b: Date) -> Date {
    if a > b {
        a
    } else {
        b
    }
}

fn date_between(rng: &mut Rng, from: Date, to: Date) -> Date {
    if to <= from {
        return from;
    }
    from.add_days(rng.below((to.to_days() - from.to_days() + 1) as usize) as i64)
}

fn add_years(d: Date, years: i32) -> Date {
    d.add_months(i64::from(years) * 12)
}

struct City {
    lists: Lists,
    towns: Vec<Town>,
    people: Vec<Person>,
    households: Vec<Household>,
}

impl City {
    fn build(seed: u64, residents: usize) -> Result<Self, GenError> {
        if residents == 0 {
            return Err(GenError::Size("no residents"));
        }
        let mut rng = Rng::new(seed);
        let lists = lists();
        let households = ((residents as u128 * REFERENCE_HOUSEHOLDS as u128
            + REFERENCE_RESIDENTS as u128 / 2)
            / REFERENCE_RESIDENTS as u128)
            .max(1) as usize;
        let towns = make_towns(&mut rng, &lists);
        let mut city = City {
            lists,
            towns,
            people: Vec::with_capacity(residents + residents / 100),
            households: Vec::with_capacity(households),
        };
        let sizes = household_sizes(&mut rng, households, residents);
        let mut atena: u64 = 100_000_000;
        let mut number: u64 = 500_000_000;
        for size in sizes {
            number += 1 + rng.below(3) as u64;
            city.add_household(&mut rng, size, number, &mut atena);
        }
        city.add_former_residents(&mut rng, residents / 200, &mut atena);
        Ok(city)
    }

    fn random_addr(&self, rng: &mut Rng) -> Addr {
        let town = rng.below(self.towns.len());
        let chome = match self.towns[town].chome {
            0 => 0,
            n => 1 + rng.below(n as usize) as u32,
        };
        let building = rng.chance(0.3).then(|| {
            (
                rng.below(BUILDINGS.len()),
                (1 + rng.below(5) as u32) * 100 + 1 + rng.below(8) as u32,
            )
        });
        Addr {
            town,
            chome,
            ban: 1 + rng.below(BLOCKS as usize) as u32,
            go: 1 + rng.below(20) as u32,
            building,
        }
    }

    fn family_name(&self, rng: &mut Rng) -> (String, String) {
        if rng.chance(0.01) {
            let (k, r) = rng.pick(VARIANT_FAMILIES);
            return ((*k).to_owned(), (*r).to_owned());
        }
        let (k, r) = rng.pick(&self.lists.family);
        ((*k).to_owned(), (*r).to_owned())
    }

    fn given(&self, rng: &mut Rng, male: bool) -> (&'static str, &'static str) {
        *rng.pick(if male {
            &self.lists.male
        } else {
            &self.lists.female
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn person(
        &mut self,
        rng: &mut Rng,
        atena: &mut u64,
        household: usize,
        family: &(String, String),
        foreign: Option<usize>,
        age: i64,
        male: bool,
        role: Role,
        relation: &'static str,
    ) -> usize {
        *atena += 1 + rng.below(4) as u64;
        let birth = birth_for_age(rng, age.clamp(0, 105));
        let (family, given, foreign) = match foreign {
            Some(f) => {
                let nat = &FOREIGN[f];
                let fam = if role == Role::Head || role == Role::Parent {
                    *rng.pick(nat.family)
                } else {
                    (family.0.as_str(), family.1.as_str())
                };
                let fam = (fam.0.to_owned(), fam.1.to_owned());
                (
                    fam,
                    *rng.pick(nat.given),
                    Some((f, *rng.pick(nat.statuses))),
                )
            }
            None => (family.clone(), self.given(rng, male), None),
        };
        // Most adults moved in at some point; children were mostly born here.
        let moved_in = if foreign.is_some() || (age >= 18 && rng.chance(0.6)) || rng.chance(0.15) {
            Some(date_between(
                rng,
                later(birth, add_years(reference_date(), -40)),
                reference_date().add_days(-1),
            ))
        } else {
            None
        };
        let former_family =
            (role == Role::Spouse && rng.chance(0.03)).then(|| rng.pick(&self.lists.family).0);
        let my_number = my_number(rng);
        self.people.push(Person {
            atena: *atena,
            household,
            family,
            given,
            birth,
            male,
            role,
            relation,
            moved_in,
            former_family,
            foreign,
            status: Status::Living,
            changed_on: None,
            my_number,
        });
        self.people.len() - 1
    }

    fn add_household(&mut self, rng: &mut Rng, size: usize, number: u64, atena: &mut u64) {
        let h = self.households.len();
        let shape = match size {
            1 => Shape::Single,
            2 => [
                Shape::Couple,
                Shape::SingleParent,
                Shape::ParentAndGrownChild,
            ][rng.weighted(&[55, 20, 25])],
            3 => [
                Shape::CoupleKids,
                Shape::SingleParent,
                Shape::ThreeGenerations,
            ][rng.weighted(&[70, 15, 15])],
            _ => [Shape::CoupleKids, Shape::ThreeGenerations][rng.weighted(&[80, 20])],
        };
        let addr = self.random_addr(rng);
        self.households.push(Household {
            number,
            shape,
            members: Vec::with_capacity(size),
            addr,
        });
        let foreign = rng.chance(0.025).then(|| rng.below(FOREIGN.len()));
        let family = self.family_name(rng);
        let mut add = |city: &mut City,
                       rng: &mut Rng,
                       age: i64,
                       male: bool,
                       role: Role,
                       rel: &'static str| {
            let p = city.person(rng, atena, h, &family, foreign, age, male, role, rel);
            city.households[h].members.push(p);
            p
        };
        let head_male = rng.chance(0.8);
        let spouse_rel = if head_male { "妻" } else { "夫" };
        match shape {
            Shape::Single => {
                let age = [rng.range(65, 98), rng.range(18, 39), rng.range(40, 64)]
                    [rng.weighted(&[46, 36, 18])];
                let male = rng.chance(if age >= 65 { 0.35 } else { 0.55 });
                add(self, rng, age, male, Role::Head, "世帯主");
            }
            Shape::Couple => {
                let age = [rng.range(24, 40), rng.range(41, 64), rng.range(65, 95)]
                    [rng.weighted(&[24, 20, 56])];
                add(self, rng, age, head_male, Role::Head, "世帯主");
                let spouse_age = (age + rng.range(-4, 3)).max(18);
                add(self, rng, spouse_age, !head_male, Role::Spouse, spouse_rel);
            }
            Shape::CoupleKids | Shape::ThreeGenerations => {
                let kids = if shape == Shape::CoupleKids {
                    size - 2
                } else {
                    size.saturating_sub(3)
                };
                let age = rng.range(29, 62);
                add(self, rng, age, head_male, Role::Head, "世帯主");
                let spouse_age = (age + rng.range(-4, 3)).max(20);
                add(self, rng, spouse_age, !head_male, Role::Spouse, spouse_rel);
                let oldest = (age - 25).clamp(0, 34);
                let mut kid_age = rng.range(oldest / 3, oldest);
                for _ in 0..kids {
                    let male = rng.chance(0.51);
                    add(self, rng, kid_age, male, Role::Child, "子");
                    kid_age = (kid_age - rng.range(1, 4)).max(0);
                }
                if shape == Shape::ThreeGenerations {
                    let male = rng.chance(0.3);
                    let parent_age = (age + rng.range(25, 35)).min(100);
                    add(
                        self,
                        rng,
                        parent_age,
                        male,
                        Role::Parent,
                        if male { "父" } else { "母" },
                    );
                }
            }
            Shape::SingleParent => {
                let age = rng.range(24, 55);
                let male = rng.chance(0.15);
                add(self, rng, age, male, Role::Head, "世帯主");
                let oldest = (age - 20).clamp(0, 30);
                let mut kid_age = rng.range(oldest / 3, oldest);
                for _ in 1..size {
                    let male = rng.chance(0.51);
                    add(self, rng, kid_age, male, Role::Child, "子");
                    kid_age = (kid_age - rng.range(1, 4)).max(0);
                }
            }
            Shape::ParentAndGrownChild => {
                let age = rng.range(68, 96);
                let male = rng.chance(0.3);
                add(self, rng, age, male, Role::Head, "世帯主");
                let child_age = age - rng.range(25, 35);
                let child_male = rng.chance(0.5);
                add(self, rng, child_age, child_male, Role::Child, "子");
            }
        }
    }

    /// People who moved out or died in the last year: still in a full 住民記録 file,
    /// with their 状態 and 異動日, in households of their own.
    fn add_former_residents(&mut self, rng: &mut Rng, count: usize, atena: &mut u64) {
        for _ in 0..count {
            let h = self.households.len();
            let dead = rng.chance(0.45);
            let age = if dead {
                rng.range(70, 100)
            } else {
                rng.range(18, 60)
            };
            let family = self.family_name(rng);
            let male = rng.chance(0.5);
            let addr = self.random_addr(rng);
            self.households.push(Household {
                number: 900_000_000 + h as u64,
                shape: Shape::Single,
                members: Vec::new(),
                addr,
            });
            let p = self.person(
                rng,
                atena,
                h,
                &family,
                None,
                age,
                male,
                Role::Head,
                "世帯主",
            );
            self.households[h].members.push(p);
            let person = &mut self.people[p];
            person.status = if dead { Status::Dead } else { Status::MovedOut };
            person.changed_on = Some(date_between(
                rng,
                reference_date().add_days(-365),
                reference_date().add_days(-1),
            ));
        }
    }

    fn head(&self, h: usize) -> &Person {
        &self.people[self.households[h].members[0]]
    }

    fn address_text(&self, a: &Addr) -> (String, String, String) {
        let town = &self.towns[a.town];
        let banchi = if a.chome == 0 {
            format!("{}番地{}", a.ban, a.go)
        } else {
            format!("{}丁目{}番{}号", a.chome, a.ban, a.go)
        };
        let full = format!("{CITY_PREFECTURE}{CITY_NAME}{}{banchi}", town.name);
        let katagaki = a
            .building
            .map(|(b, room)| format!("{} {room}号室", BUILDINGS[b]))
            .unwrap_or_default();
        (full, banchi, katagaki)
    }

    fn machiaza_code(a: &Addr) -> String {
        format!("{:04}{:03}", a.town + 1, a.chome)
    }

    fn range_of(ban: u32) -> usize {
        RANGES
            .iter()
            .position(|&(lo, hi)| (lo..=hi).contains(&ban))
            .unwrap_or(0)
    }

    fn elementary_of(&self, a: &Addr) -> usize {
        let t = &self.towns[a.town];
        // The last block range of every third town lies in the next district.
        if a.town % 3 == 2 && Self::range_of(a.ban) == 2 {
            (t.elementary + 1) % self.school_count().0
        } else {
            t.elementary
        }
    }

    fn school_count(&self) -> (usize, usize) {
        let e = self.towns.iter().map(|t| t.elementary).max().unwrap_or(0) + 1;
        let j = self.towns.iter().map(|t| t.junior).max().unwrap_or(0) + 1;
        (e, j)
    }

    fn school_name(&self, elementary: bool, index: usize) -> String {
        let t = self
            .towns
            .iter()
            .find(|t| {
                if elementary {
                    t.elementary == index
                } else {
                    t.junior == index
                }
            })
            .map(|t| t.name.trim_end_matches('町').to_owned())
            .unwrap_or_default();
        if elementary {
            format!("書無市立{t}小学校")
        } else {
            format!("書無市立{t}中学校")
        }
    }

    fn other_place(&self, rng: &mut Rng) -> String {
        let p = rng.pick(&self.lists.prefectures).0;
        let c = rng.pick(&self.lists.cities).0;
        let t = rng.pick(&self.lists.towns).0;
        format!("{p}{c}{t}{}番地{}", rng.range(1, 40), rng.range(1, 30))
    }
}

fn make_towns(rng: &mut Rng, lists: &Lists) -> Vec<Town> {
    const TOWNS: usize = 40;
    let mut names: Vec<(String, String)> = vec![
        ("山﨑町".into(), "ヤマザキチョウ".into()),
        ("髙松町".into(), "タカマツチョウ".into()),
    ];
    while names.len() < TOWNS {
        let (k, r) = rng.pick(&lists.towns);
        let cp932_ok = !encoding_rs::SHIFT_JIS.encode(k).2;
        if cp932_ok && !names.iter().any(|(n, _)| n == k) {
            names.push(((*k).to_owned(), (*r).to_owned()));
        }
    }
    names
        .into_iter()
        .enumerate()
        .map(|(i, (name, kana))| Town {
            name,
            kana,
            chome: [0, 2, 3, 4, 5][rng.below(5)],
            postal: format!("{:03}-{:04}", 990 + i / 20, 1000 + (i * 37) % 9000),
            elementary: i / 2,
            junior: i / 5,
        })
        .collect()
}

/// Household sizes with the given count and sum: a Japanese-city distribution, then
/// nudged one person at a time until the total is exact.
fn household_sizes(rng: &mut Rng, households: usize, residents: usize) -> Vec<usize> {
    let households = households.min(residents).max(1);
    let weights = [45, 29, 13, 9, 3, 1];
    let mut sizes: Vec<usize> = (0..households)
        .map(|_| 1 + rng.weighted(&weights))
        .collect();
    let mut total: usize = sizes.iter().sum();
    while total < residents {
        let i = rng.below(households);
        if sizes[i] < 6 || total + households > residents + residents / 2 {
            sizes[i] += 1;
            total += 1;
        }
    }
    while total > residents {
        let i = rng.below(households);
        if sizes[i] > 1 {
            sizes[i] -= 1;
            total -= 1;
        }
    }
    sizes
}

// ---------------------------------------------------------------------------------
// CSV output

#[derive(Clone, Copy)]
enum Enc {
    Utf8Bom,
    Utf8,
    Cp932,
}

struct CsvOut {
    name: String,
    enc: Enc,
    text: String,
    rows: usize,
}

impl CsvOut {
    fn new(name: impl Into<String>, enc: Enc, header: &[&str]) -> Self {
        let mut out = Self {
            name: name.into(),
            enc,
            text: String::with_capacity(1 << 16),
            rows: 0,
        };
        out.line(header);
        out.rows = 0;
        out
    }

    fn line<S: AsRef<str>>(&mut self, fields: &[S]) {
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                self.text.push(',');
            }
            let f = f.as_ref();
            if f.contains([',', '"', '\r', '\n']) {
                self.text.push('"');
                self.text.push_str(&f.replace('"', "\"\""));
                self.text.push('"');
            } else {
                self.text.push_str(f);
            }
        }
        self.text.push_str("\r\n");
        self.rows += 1;
    }

    fn write(self, dir: &Path, summary: &mut Vec<(String, usize)>) -> Result<(), GenError> {
        let bytes = match self.enc {
            Enc::Utf8Bom => {
                let mut b = Vec::with_capacity(self.text.len() + 3);
                b.extend_from_slice(b"\xEF\xBB\xBF");
                b.extend_from_slice(self.text.as_bytes());
                b
            }
            Enc::Utf8 => self.text.into_bytes(),
            Enc::Cp932 => {
                let (bytes, _, unmappable) = encoding_rs::SHIFT_JIS.encode(&self.text);
                if unmappable {
                    let line = self
                        .text
                        .lines()
                        .position(|l| encoding_rs::SHIFT_JIS.encode(l).2)
                        .map_or(0, |i| i + 1);
                    return Err(GenError::Unencodable {
                        file: self.name.clone(),
                        line,
                    });
                }
                bytes.into_owned()
            }
        };
        let path = dir.join(&self.name);
        std::fs::write(&path, bytes).map_err(|source| GenError::Io { file: path, source })?;
        summary.push((self.name, self.rows));
        Ok(())
    }
}

/// Writes the synthetic city of `residents` living residents (households in the
/// reference city's proportion) into `out`, one CSV file per data kind, in the
/// reference format ([`super::mapping::Mapping::reference`]). Deterministic for a
/// seed. `out` is created if missing; existing files of the same names are replaced.
pub fn gen_city(out: &Path, seed: u64, residents: usize) -> Result<GenSummary, GenError> {
    std::fs::create_dir_all(out).map_err(|source| GenError::Io {
        file: out.to_owned(),
        source,
    })?;
    let city = City::build(seed, residents)?;
    // Each kind draws from its own stream, so adding a kind never changes the others.
    let mut files = Vec::new();
    write_address_master(&city, out, &mut files)?;
    write_jumin(&city, out, &mut files)?;
    write_records(&city, seed, out, &mut files)?;
    let living = city.people.iter().filter(|p| p.living()).count();
    let households = city
        .households
        .iter()
        .filter(|h| h.members.iter().any(|&m| city.people[m].living()))
        .count();
    Ok(GenSummary {
        residents: living,
        households,
        files,
    })
}

fn write_address_master(
    city: &City,
    out: &Path,
    files: &mut Vec<(String, usize)>,
) -> Result<(), GenError> {
    let mut f = CsvOut::new(
        "address_master.csv",
        Enc::Cp932,
        &[
            "町字コード",
            "町字名",
            "町字カナ",
            "丁目",
            "番地開始",
            "番地終了",
            "自治会",
            "小学校区",
            "中学校区",
            "郵便番号",
        ],
    );
    for (t, town) in city.towns.iter().enumerate() {
        let chomes: Vec<u32> = if town.chome == 0 {
            vec![0]
        } else {
            (1..=town.chome).collect()
        };
        for chome in chomes {
            for (r, &(lo, hi)) in RANGES.iter().enumerate() {
                let a = Addr {
                    town: t,
                    chome,
                    ban: lo,
                    go: 1,
                    building: None,
                };
                let jichikai = if chome == 0 {
                    format!("{}第{}自治会", town.name, r + 1)
                } else {
                    format!("{}{}丁目第{}自治会", town.name, chome, r + 1)
                };
                f.line(&[
                    City::machiaza_code(&a),
                    if chome == 0 {
                        town.name.clone()
                    } else {
                        format!("{}{}丁目", town.name, chome)
                    },
                    town.kana.clone(),
                    chome.to_string(),
                    lo.to_string(),
                    hi.to_string(),
                    jichikai,
                    city.school_name(true, city.elementary_of(&a)),
                    city.school_name(false, town.junior),
                    town.postal.clone(),
                ]);
            }
        }
    }
    f.write(out, files)
}

fn write_jumin(city: &City, out: &Path, files: &mut Vec<(String, usize)>) -> Result<(), GenError> {
    jumin_csv(city).write(out, files)
}

/// The 住民記録 file, one row per person in `city.people` order.
fn jumin_csv(city: &City) -> CsvOut {
    let mut f = CsvOut::new(
        "jumin.csv",
        Enc::Utf8Bom,
        &[
            "宛名番号",
            "世帯番号",
            "氏名",
            "氏名フリガナ",
            "旧氏",
            "通称",
            "生年月日",
            "性別",
            "続柄",
            "世帯主",
            "町字コード",
            "住所",
            "番地",
            "方書",
            "郵便番号",
            "住民となった日",
            "前住所",
            "本籍",
            "筆頭者",
            "国籍",
            "在留資格",
            "在留期間満了日",
            "状態",
            "異動日",
            "個人番号",
        ],
    );
    let mut rng = Rng::new(0x6A75_6D69_6E00);
    for p in &city.people {
        let h = &city.households[p.household];
        let head = city.head(p.household);
        let (full, banchi, katagaki) = city.address_text(&h.addr);
        let date = |d: Option<Date>| d.map(|d| d.to_string()).unwrap_or_default();
        let moved_in = p.moved_in;
        let became = moved_in.unwrap_or(p.birth);
        let previous = if moved_in.is_some() {
            city.other_place(&mut rng)
        } else {
            String::new()
        };
        let (honseki, hittou) = if p.foreign.is_some() {
            (String::new(), String::new())
        } else if rng.chance(0.4) {
            (full.clone(), head.name())
        } else {
            (city.other_place(&mut rng), head.name())
        };
        let (nationality, status, period) = match p.foreign {
            Some((n, s)) => (
                FOREIGN[n].nationality,
                s,
                if s == "永住者" {
                    String::new()
                } else {
                    date_between(
                        &mut rng,
                        reference_date().add_days(30),
                        add_years(reference_date(), 3),
                    )
                    .to_string()
                },
            ),
            None => ("", "", String::new()),
        };
        let status_text = match p.status {
            Status::Living => "在住",
            Status::MovedOut => "転出",
            Status::Dead => "死亡",
        };
        f.line(&[
            format!("{:010}", p.atena),
            format!("{:010}", h.number),
            p.name(),
            p.kana(),
            p.former_family.unwrap_or_default().to_owned(),
            String::new(),
            p.birth.to_string(),
            if p.male { "1" } else { "2" }.to_owned(),
            p.relation.to_owned(),
            head.name(),
            City::machiaza_code(&h.addr),
            full,
            banchi,
            katagaki,
            city.towns[h.addr.town].postal.clone(),
            became.to_string(),
            previous,
            honseki,
            hittou,
            nationality.to_owned(),
            status.to_owned(),
            period,
            status_text.to_owned(),
            date(p.changed_on.or(moved_in)),
            p.my_number.clone(),
        ]);
    }
    f
}

/// Everything but 住民記録 and the address master.
fn write_records(
    city: &City,
    seed: u64,
    out: &Path,
    files: &mut Vec<(String, usize)>,
) -> Result<(), GenError> {
    let r = reference_date();
    let living: Vec<&Person> = city.people.iter().filter(|p| p.living()).collect();
    let stream = |n: u64| Rng::new(seed.wrapping_mul(0x100_0000_01B3).wrapping_add(n));
    let atena = |p: &Person| format!("{:010}", p.atena);
    let became = |p: &Person| p.moved_in.unwrap_or(p.birth);

    // 印鑑登録: about half of those 15 and over.
    let mut rng = stream(1);
    let mut f = CsvOut::new(
        "inkan.csv",
        Enc::Cp932,
        &["宛名番号", "登録番号", "登録日", "状態"],
    );
    let mut reg = 3_000_000u64;
    for p in &living {
        if p.age() >= 15 && rng.chance(if p.age() >= 65 { 0.7 } else { 0.5 }) {
            reg += 1 + rng.below(3) as u64;
            let from = later(add_years(p.birth, 15), became(p));
            f.line(&[
                atena(p),
                format!("{reg:08}"),
                yyyymmdd(date_between(&mut rng, from, r)),
                "登録".into(),
            ]);
        }
    }
    f.write(out, files)?;

    // マイナンバーカード情報: about 78 % hold a card.
    let mut rng = stream(2);
    let mut f = CsvOut::new(
        "mynumber_card.csv",
        Enc::Utf8,
        &[
            "宛名番号",
            "交付日",
            "カード有効期限",
            "電子証明書有効期限",
            "状態",
        ],
    );
    for p in &living {
        if rng.chance(0.78) {
            let issued = date_between(&mut rng, later(add_years(r, -9), p.birth), r.add_days(-1));
            let adult = age_on(p.birth, issued) >= 18;
            let birthday_after = |years: i32| {
                let y = issued.year() + years;
                Date::new(y, p.birth.month(), p.birth.day().min(28)).unwrap_or(issued)
            };
            let card = birthday_after(if adult { 10 } else { 5 });
            let cert = birthday_after(5);
            f.line(&[
                atena(p),
                issued.to_string(),
                card.to_string(),
                cert.to_string(),
                "交付済".into(),
            ]);
        }
    }
    f.write(out, files)?;

    // 国民健康保険: by household, mostly 65–74 heads and some self-employed.
    let mut rng = stream(3);
    let mut f = CsvOut::new(
        "kokuho.csv",
        Enc::Cp932,
        &[
            "宛名番号",
            "記号",
            "番号",
            "資格取得日",
            "資格喪失日",
            "世帯主区分",
        ],
    );
    for (hi, h) in city.households.iter().enumerate() {
        let head = city.head(hi);
        if !head.living() {
            continue;
        }
        let p_in = match head.age() {
            65..=74 => 0.9,
            75.. => 0.25,
            _ => 0.17,
        };
        if !rng.chance(p_in) {
            continue;
        }
        let number = format!("{:07}", h.number % 10_000_000);
        for &m in &h.members {
            let p = &city.people[m];
            if p.age() < 75 {
                let since = date_between(&mut rng, later(became(p), add_years(r, -20)), r);
                f.line(&[
                    atena(p),
                    "01".into(),
                    number.clone(),
                    yyyymmdd(since),
                    String::new(),
                    if p.role == Role::Head { "1" } else { "0" }.into(),
                ]);
            }
        }
    }
    f.write(out, files)?;

    // 後期高齢者医療: everyone 75 and over.
    let mut rng = stream(4);
    let mut f = CsvOut::new(
        "kouki.csv",
        Enc::Cp932,
        &["宛名番号", "被保険者番号", "資格取得日", "資格喪失日"],
    );
    let mut n = 20_000_000u64;
    for p in &living {
        if p.age() >= 75 {
            n += 1 + rng.below(2) as u64;
            f.line(&[
                atena(p),
                format!("{n:08}"),
                yyyymmdd(later(add_years(p.birth, 75), became(p))),
                String::new(),
            ]);
        }
    }
    f.write(out, files)?;

    // 介護保険: every 65+ is insured (第1号被保険者); some hold a care-level 認定.
    let mut rng = stream(5);
    let mut f = CsvOut::new(
        "kaigo.csv",
        Enc::Cp932,
        &[
            "宛名番号",
            "被保険者番号",
            "要介護度",
            "認定開始日",
            "認定終了日",
            "住所地特例",
        ],
    );
    let mut n = 1_000_000_000u64;
    for p in &living {
        let age = p.age();
        if age < 65 {
            continue;
        }
        n += 1 + rng.below(2) as u64;
        let p_cert = match age {
            65..=74 => 0.04,
            75..=84 => 0.19,
            _ => 0.57,
        };
        let (level, from, to) = if rng.chance(p_cert) {
            let from = date_between(&mut rng, add_years(r, -1), r);
            (
                CARE_LEVELS[rng.weighted(&[14, 14, 20, 17, 13, 12, 10])],
                yyyymmdd(from),
                yyyymmdd(add_years(from, 1).add_days(-1)),
            )
        } else {
            ("", String::new(), String::new())
        };
        f.line(&[
            atena(p),
            format!("{n:010}"),
            level.into(),
            from,
            to,
            if rng.chance(0.01) { "1" } else { "0" }.into(),
        ]);
    }
    f.write(out, files)?;

    // 児童手当 and 児童扶養手当: one row per child, the household head receives.
    let mut rng = stream(6);
    let mut allowance = CsvOut::new(
        "jidou_teate.csv",
        Enc::Cp932,
        &["受給者宛名番号", "児童宛名番号", "認定日", "状態"],
    );
    let mut single = CsvOut::new(
        "jidou_fuyou.csv",
        Enc::Cp932,
        &[
            "受給者宛名番号",
            "児童宛名番号",
            "認定日",
            "支給区分",
            "状態",
        ],
    );
    let mut welfare = CsvOut::new(
        "fukushi_iryo.csv",
        Enc::Cp932,
        &["宛名番号", "種別", "受給者番号", "有効開始日", "有効終了日"],
    );
    let mut nursery = CsvOut::new(
        "hoiku.csv",
        Enc::Cp932,
        &["宛名番号", "施設名", "認定区分", "入園日", "退園予定日"],
    );
    let mut aid = CsvOut::new(
        "shugaku_enjo.csv",
        Enc::Cp932,
        &["宛名番号", "学校名", "認定状態", "認定日"],
    );
    let mut welfare_no = 7_000_000u64;
    let fiscal_end = Date::new(r.fiscal_year() + 1, 3, 31).unwrap_or(r);
    for (hi, h) in city.households.iter().enumerate() {
        let head = city.head(hi);
        if !head.living() {
            continue;
        }
        let single_parent = h.shape == Shape::SingleParent;
        let fuyou = single_parent && rng.chance(0.8);
        let hitorioya = single_parent && rng.chance(0.7);
        if hitorioya {
            welfare_no += 1;
            welfare.line(&[
                atena(head),
                "ひとり親".into(),
                format!("{welfare_no:08}"),
                yyyymmdd(later(became(head), add_years(r, -3))),
                yyyymmdd(fiscal_end),
            ]);
        }
        for &m in &h.members {
            let child = &city.people[m];
            if child.role != Role::Child {
                continue;
            }
            let fy_age = age_on(child.birth, fiscal_end);
            let certified = later(child.birth.add_days(14), became(child));
            if fy_age <= 18 {
                allowance.line(&[
                    atena(head),
                    atena(child),
                    yyyymmdd(later(certified, Date::new(2024, 10, 1).unwrap_or(r))),
                    "支給中".into(),
                ]);
                if fuyou {
                    single.line(&[
                        atena(head),
                        atena(child),
                        yyyymmdd(certified),
                        if rng.chance(0.55) {
                            "全部支給"
                        } else {
                            "一部支給"
                        }
                        .into(),
                        "支給中".into(),
                    ]);
                }
            }
            let age = child.age();
            if fy_age <= 15 {
                welfare_no += 1;
                welfare.line(&[
                    atena(child),
                    "こども".into(),
                    format!("{welfare_no:08}"),
                    yyyymmdd(certified),
                    yyyymmdd(fiscal_end),
                ]);
            }
            if hitorioya && fy_age <= 18 {
                welfare_no += 1;
                welfare.line(&[
                    atena(child),
                    "ひとり親".into(),
                    format!("{welfare_no:08}"),
                    yyyymmdd(certified),
                    yyyymmdd(fiscal_end),
                ]);
            }
            let town = city.towns[h.addr.town]
                .name
                .trim_end_matches('町')
                .to_owned();
            if age <= 2 && rng.chance(0.4) {
                nursery.line(&[
                    atena(child),
                    format!("{town}保育園"),
                    "3号".into(),
                    yyyymmdd(date_between(
                        &mut rng,
                        later(child.birth.add_days(57), add_years(r, -2)),
                        r,
                    )),
                    yyyymmdd(add_years(child.birth, 6)),
                ]);
            } else if (3..=5).contains(&age) && rng.chance(0.9) {
                let (facility, class) = if rng.chance(0.6) {
                    (format!("{town}保育園"), "2号")
                } else {
                    (format!("{town}幼稚園"), "1号")
                };
                nursery.line(&[
                    atena(child),
                    facility,
                    class.into(),
                    yyyymmdd(date_between(&mut rng, add_years(r, -2), r)),
                    yyyymmdd(add_years(child.birth, 6)),
                ]);
            }
            // School age by the fiscal year: 小1 is 7 at fiscal-year end, 中3 is 15.
            if (7..=15).contains(&fy_age) && rng.chance(if single_parent { 0.45 } else { 0.1 }) {
                let school = if fy_age <= 12 {
                    city.school_name(true, city.elementary_of(&h.addr))
                } else {
                    city.school_name(false, city.towns[h.addr.town].junior)
                };
                aid.line(&[
                    atena(child),
                    school,
                    "認定".into(),
                    yyyymmdd(Date::new(r.year(), 4, 1).unwrap_or(r)),
                ]);
            }
        }
    }
    // 重度心身障害者医療: a few of everyone.
    for p in &living {
        if rng.chance(0.006) {
            welfare_no += 1;
            welfare.line(&[
                atena(p),
                "重度心身".into(),
                format!("{welfare_no:08}"),
                yyyymmdd(later(became(p), add_years(r, -5))),
                yyyymmdd(fiscal_end),
            ]);
        }
    }
    allowance.write(out, files)?;
    single.write(out, files)?;
    welfare.write(out, files)?;
    nursery.write(out, files)?;
    aid.write(out, files)?;

    // 個人住民税 (課税年度 the reference fiscal year) and 滞納管理.
    let mut rng = stream(7);
    let mut tax = CsvOut::new(
        "juminzei.csv",
        Enc::Cp932,
        &["宛名番号", "課税年度", "総所得金額", "課税区分"],
    );
    let mut arrears = CsvOut::new("taino.csv", Enc::Cp932, &["宛名番号", "税目", "滞納有無"]);
    for p in &living {
        if p.age() < 18 {
            continue;
        }
        let p_income = if p.age() >= 65 {
            0.45
        } else if p.role == Role::Spouse {
            0.55
        } else {
            0.85
        };
        let income = if rng.chance(p_income) {
            rng.range(500, 9_000) * 1000
        } else {
            0
        };
        let taxed = income > 450_000;
        tax.line(&[
            atena(p),
            r.fiscal_year().to_string(),
            income.to_string(),
            if taxed { "課税" } else { "非課税" }.into(),
        ]);
        if taxed && rng.chance(0.015) {
            arrears.line(&[atena(p), (*rng.pick(INSURED_TAXES)).into(), "有".into()]);
        }
    }
    tax.write(out, files)?;
    arrears.write(out, files)?;

    // 住登外: people not registered here but known to the city (tax payers, …).
    let mut rng = stream(8);
    let mut f = CsvOut::new(
        "jutogai.csv",
        Enc::Utf8Bom,
        &[
            "宛名番号",
            "氏名",
            "氏名フリガナ",
            "生年月日",
            "性別",
            "住所",
            "登録事由",
        ],
    );
    let mut n = 800_000_000u64;
    for _ in 0..(city.people.len() * 3 / 100).max(1) {
        n += 1 + rng.below(5) as u64;
        let male = rng.chance(0.5);
        let (fk, fr) = *rng.pick(&city.lists.family);
        let (gk, gr) = city.given(&mut rng, male);
        let age = rng.range(20, 90);
        let birth = birth_for_age(&mut rng, age);
        let reason = *rng.pick(&[
            "固定資産税納税義務者",
            "住所地特例者",
            "給付対象者",
            "転出後の課税対象者",
        ]);
        f.line(&[
            format!("{n:010}"),
            format!("{fk}\u{3000}{gk}"),
            format!("{fr}\u{3000}{gr}"),
            birth.to_string(),
            if male { "1" } else { "2" }.into(),
            city.other_place(&mut rng),
            reason.into(),
        ]);
    }
    f.write(out, files)?;

    // 転出証明書情報: people who announced a move into the city (特例転入).
    let mut rng = stream(9);
    let mut f = CsvOut::new(
        "tenshutsu.csv",
        Enc::Utf8Bom,
        &[
            "住民票コード",
            "氏名",
            "氏名フリガナ",
            "生年月日",
            "性別",
            "前住所",
            "転出予定日",
            "転出先",
            "世帯主",
            "続柄",
            "個人番号",
        ],
    );
    for _ in 0..(city.people.len() / 2000).max(1) {
        let code = format!(
            "{:011}",
            10_000_000_000u64 + rng.below(89_999_999_999) as u64
        );
        let male = rng.chance(0.5);
        let (fk, fr) = *rng.pick(&city.lists.family);
        let (gk, gr) = city.given(&mut rng, male);
        let age = rng.range(18, 80);
        let birth = birth_for_age(&mut rng, age);
        let to = city.random_addr(&mut rng);
        let name = format!("{fk}\u{3000}{gk}");
        f.line(&[
            code,
            name.clone(),
            format!("{fr}\u{3000}{gr}"),
            birth.to_string(),
            if male { "1" } else { "2" }.into(),
            city.other_place(&mut rng),
            date_between(&mut rng, r, r.add_days(14)).to_string(),
            city.address_text(&to).0,
            name,
            "世帯主".into(),
            my_number(&mut rng),
        ]);
    }
    // Whole families moving in (from their own stream, so the single people above
    // stay as they were for a seed).
    for family in moving_in_families(city, seed) {
        for m in &family {
            f.line(&[
                m.code.clone(),
                m.name.clone(),
                m.kana.clone(),
                m.birth.to_string(),
                if m.male { "1" } else { "2" }.into(),
                m.previous.clone(),
                m.move_date.to_string(),
                m.destination.clone(),
                m.head_name.clone(),
                m.relation.into(),
                m.my_number.clone(),
            ]);
        }
    }
    f.write(out, files)?;
    Ok(())
}

/// One person of a family moving in (a 転出証明書情報 row).
struct Mover {
    code: String,
    name: String,
    kana: String,
    birth: Date,
    male: bool,
    relation: &'static str,
    previous: String,
    move_date: Date,
    destination: String,
    head_name: String,
    my_number: String,
}

/// Families moving in (特例転入), 2–5 people each, the first a couple with two
/// children (one at 小学校, one younger): same 世帯主, 前住所, 転出予定日 and 転出先
/// (an address of this city's master). At least four families; one per 3,000 people
/// in larger cities. Deterministic for the seed.
fn moving_in_families(city: &City, seed: u64) -> Vec<Vec<Mover>> {
    let r = reference_date();
    let mut rng = Rng::new(seed.wrapping_mul(0x100_0000_01B3).wrapping_add(10));
    let count = (city.people.len() / 3000).max(4);
    let mut families = Vec::with_capacity(count);
    for f in 0..count {
        let size = if f == 0 { 4 } else { 2 + rng.below(4) };
        let (fk, fr) = *rng.pick(&city.lists.family);
        let single_parent = f > 0 && rng.chance(0.2);
        let head_age = rng.range(30, 46);
        let head_male = rng.chance(if single_parent { 0.15 } else { 0.85 });
        let previous = city.other_place(&mut rng);
        let move_date = date_between(&mut rng, r, r.add_days(10));
        let destination = city.address_text(&city.random_addr(&mut rng)).0;
        let mut people: Vec<(i64, bool, &'static str)> = vec![(head_age, head_male, "世帯主")];
        if !single_parent {
            people.push((
                (head_age + rng.range(-4, 3)).max(22),
                !head_male,
                if head_male { "妻" } else { "夫" },
            ));
        }
        let kids = size - people.len();
        for k in 0..kids {
            let age = if f == 0 {
                [rng.range(7, 11), rng.range(2, 5)][k.min(1)]
            } else {
                rng.range(0, (head_age - 24).clamp(1, 17))
            };
            people.push((age, rng.chance(0.51), "子"));
        }
        let mut members = Vec::with_capacity(size);
        let mut head_full = String::new();
        for (i, (age, male, relation)) in people.into_iter().enumerate() {
            let (gk, gr) = city.given(&mut rng, male);
            let name = format!("{fk}\u{3000}{gk}");
            if i == 0 {
                head_full = name.clone();
            }
            members.push(Mover {
                code: format!(
                    "{:011}",
                    90_000_000_000u64 + rng.below(9_999_999_999) as u64
                ),
                name,
                kana: format!("{fr}\u{3000}{gr}"),
                birth: birth_for_age(&mut rng, age),
                male,
                relation,
                previous: previous.clone(),
                move_date,
                destination: destination.clone(),
                head_name: String::new(),
                my_number: my_number(&mut rng),
            });
        }
        for m in &mut members {
            m.head_name = head_full.clone();
        }
        families.push(members);
    }
    families
}

// ---------------------------------------------------------------------------------
// Demo cards

/// What [`write_demo`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoSummary {
    /// The directory (`OUT/demo`).
    pub dir: PathBuf,
    /// The files written, in order.
    pub files: Vec<String>,
}

/// The PIN of every demo card.
pub const DEMO_PIN: &str = "1234";

/// A year of the Japanese era a date falls in (照合番号B uses it).
fn era_year(d: Date) -> i32 {
    let on_or_after = |y: i32, m: u8, day: u8| Date::new(y, m, day).is_some_and(|s| d >= s);
    if on_or_after(2019, 5, 1) {
        d.year() - 2018
    } else if on_or_after(1989, 1, 8) {
        d.year() - 1988
    } else if on_or_after(1926, 12, 25) {
        d.year() - 1925
    } else {
        d.year() - 1911
    }
}

struct DemoCard {
    file: String,
    label: String,
    who: String,
    name: String,
    address: String,
    birth: Date,
    male: bool,
    my_number: String,
    expiry: Date,
    security_code: String,
}

impl DemoCard {
    fn code_b(&self) -> String {
        format!(
            "{:02}{:02}{:02}{:04}{}",
            era_year(self.birth),
            self.birth.month(),
            self.birth.day(),
            self.expiry.year(),
            self.security_code
        )
    }

    fn profile(&self) -> String {
        let v = serde_json::json!({
            "type": "mynumber",
            "label": self.label,
            "pin": DEMO_PIN,
            "my_number": self.my_number,
            "name": self.name,
            "address": self.address,
            "birth_date": self.birth.to_string(),
            "sex": if self.male { "1" } else { "2" },
            "expiry_date": self.expiry.to_string(),
            "security_code": self.security_code,
        });
        let mut text = serde_json::to_string_pretty(&v).unwrap_or_default();
        text.push('\n');
        text
    }
}

fn card_expiry(birth: Date) -> Date {
    // The 10th birthday after issue for adults, the 5th for children; issued a year
    // before the reference date.
    let issued = reference_date().year() - 1;
    let years = if age_on(birth, reference_date()) >= 18 {
        10
    } else {
        5
    };
    Date::new(issued + years, birth.month(), birth.day())
        .or_else(|| Date::new(issued + years, 3, 1))
        .unwrap_or_else(reference_date)
}

/// Writes `OUT/demo/`: virtual My Number card profiles (`kakanai-vcard`'s JSON) for
/// `resident.json` — an adult of the city heading a household of two or more, for
/// the certificate demo — and `family-1.json` … `family-4.json` — the four members
/// of the first family moving in, the card's address their 前住所 —, each with PIN
/// [`DEMO_PIN`], and `README.txt` naming who they are and their 照合番号B. The same
/// seed and size as [`gen_city`] give the people of that city. All synthetic.
pub fn write_demo(out: &Path, seed: u64, residents: usize) -> Result<DemoSummary, GenError> {
    let dir = out.join("demo");
    std::fs::create_dir_all(&dir).map_err(|source| GenError::Io {
        file: dir.clone(),
        source,
    })?;
    let city = City::build(seed, residents)?;
    let mut rng = Rng::new(seed.wrapping_mul(0x100_0000_01B3).wrapping_add(11));
    let mut cards = Vec::new();
    let plain = |name: &str| {
        name.chars()
            .all(|c| (c as u32) < 0x10000 && !('\u{FE00}'..='\u{FE0F}').contains(&c))
    };
    let resident = city.households.iter().find_map(|h| {
        let living: Vec<&Person> = h
            .members
            .iter()
            .map(|&m| &city.people[m])
            .filter(|p| p.living())
            .collect();
        let head = living.first()?;
        (living.len() >= 2
            && head.role == Role::Head
            && head.foreign.is_none()
            // No 方書: the card's address is the 住所 exactly as forms print it.
            && h.addr.building.is_none()
            && (25..65).contains(&head.age())
            && plain(&head.name()))
        .then_some((h, *head))
    });
    if let Some((h, p)) = resident {
        let address = city.address_text(&h.addr).0;
        cards.push(DemoCard {
            file: "resident.json".into(),
            label: "demo-resident".into(),
            who: format!(
                "書無市の住民（世帯主、世帯{}人）。証明書請求のデモ用。宛名番号 {:010}",
                h.members.len(),
                p.atena
            ),
            name: p.name(),
            address,
            birth: p.birth,
            male: p.male,
            my_number: p.my_number.clone(),
            expiry: card_expiry(p.birth),
            security_code: format!("{:04}", rng.below(10_000)),
        });
    }
    if let Some(family) = moving_in_families(&city, seed)
        .into_iter()
        .find(|f| f.len() == 4)
    {
        for (i, m) in family.iter().enumerate() {
            cards.push(DemoCard {
                file: format!("family-{}.json", i + 1),
                label: format!("demo-family-{}", i + 1),
                who: format!(
                    "転入する4人家族の{}（住民票コード {}）。カードの住所は前住所",
                    m.relation, m.code
                ),
                name: m.name.clone(),
                address: m.previous.clone(),
                birth: m.birth,
                male: m.male,
                my_number: m.my_number.clone(),
                expiry: card_expiry(m.birth),
                security_code: format!("{:04}", rng.below(10_000)),
            });
        }
    }
    let mut files = Vec::new();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|source| GenError::Io { file: path, source })
    };
    let mut readme = format!(
        "Kakanai demo cards (架空のデータです / synthetic data, no real person)\r\n\
         City: {CITY_PREFECTURE}{CITY_NAME}, generated with seed {seed} and {residents} residents.\r\n\
         Insert one with: kakanai-vcard <file>. PIN (暗証番号) of every card: {DEMO_PIN}.\r\n\
         照合番号B = birth date in era YYMMDD + card expiry year + security code.\r\n\r\n"
    );
    for c in &cards {
        write(&c.file, &c.profile())?;
        files.push(c.file.clone());
        readme.push_str(&format!(
            "{}\r\n  {}\r\n  氏名 {}  生年月日 {}  性別 {}\r\n  住所 {}\r\n  照合番号B {}  PIN {DEMO_PIN}\r\n\r\n",
            c.file,
            c.who,
            c.name,
            c.birth,
            if c.male { "男" } else { "女" },
            c.address,
            c.code_b(),
        ));
    }
    write("README.txt", &readme)?;
    files.push("README.txt".into());
    Ok(DemoSummary { dir, files })
}

// ---------------------------------------------------------------------------------
// One day's delta (異動分)

/// What [`gen_delta`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaSummary {
    /// The day the changes happened.
    pub day: Date,
    /// Each file written and its data rows.
    pub files: Vec<(String, usize)>,
    /// 出生: children added to their parents' household.
    pub births: usize,
    /// 死亡: residents whose 状態 became 死亡.
    pub deaths: usize,
    /// 転入: people added in new households.
    pub moves_in: usize,
    /// 転出: residents whose 状態 became 転出.
    pub moves_out: usize,
    /// 婚姻: a resident living alone joining a spouse's household under a new name.
    pub marriages: usize,
    /// 消除: former residents removed from the register.
    pub removals: usize,
}

impl std::fmt::Display for DeltaSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "delta for {}: {} births, {} deaths, {} moved in, {} moved out, {} marriages, {} removed",
            self.day,
            self.births,
            self.deaths,
            self.moves_in,
            self.moves_out,
            self.marriages,
            self.removals
        )?;
        for (file, rows) in &self.files {
            writeln!(f, "  {file}: {rows} rows")?;
        }
        Ok(())
    }
}

/// The delta file's action codes (reference mapping, `[delta]`).
const ADD: &str = "1";
const CHANGE: &str = "2";
const REMOVE: &str = "3";

/// Writes one day's delta files (異動分) for the city [`gen_city`] writes with the
/// same seed and size: the day after [`reference_date`], about what a city of that
/// size sees in a day (at the reference size: 3 births, 5 deaths, 10 households
/// moving in, 17 residents moving out, 2 marriages, 1 former resident removed), as
/// `jumin_delta_<day>T230000.csv` plus, for every other kind, the removal of the
/// records of those who died or moved out. Each file gets its `.ok` marker, so `out`
/// can serve as a drop directory. Deterministic for a seed.
pub fn gen_delta(out: &Path, seed: u64, residents: usize) -> Result<DeltaSummary, GenError> {
    use super::csvfile;
    use super::mapping::{Encoding, Mapping};

    std::fs::create_dir_all(out).map_err(|source| GenError::Io {
        file: out.to_owned(),
        source,
    })?;
    let city = City::build(seed, residents)?;
    let day = reference_date().add_days(1);
    let stamp = format!("{}T230000", yyyymmdd(day));
    let base = jumin_csv(&city);
    let table =
        csvfile::parse(&base.text).map_err(|_| GenError::Size("generated file unreadable"))?;
    let header: Vec<&str> = table.header.iter().map(String::as_str).collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap_or(0);
    let row_of = |i: usize| table.records[i].fields.clone();

    let mut rng = Rng::new(seed ^ 0x0064_656C_7461);
    let scale = residents as f64 / REFERENCE_RESIDENTS as f64;
    let count = |per_day: f64| ((per_day * scale).round() as usize).max(1);
    let mut used = std::collections::HashSet::new();
    let pick = |rng: &mut Rng,
                used: &mut std::collections::HashSet<usize>,
                pred: &dyn Fn(&Person) -> bool|
     -> Option<usize> {
        for _ in 0..200_000 {
            let i = rng.below(city.people.len());
            if !used.contains(&i) && pred(&city.people[i]) {
                used.insert(i);
                return Some(i);
            }
        }
        None
    };
    let mut delta = CsvOut::new(format!("jumin_delta_{stamp}.csv"), Enc::Utf8Bom, &{
        let mut h = vec!["異動区分"];
        h.extend(header.iter().copied());
        h
    });
    let emit = |delta: &mut CsvOut, code: &str, fields: Vec<String>| {
        let mut line = vec![code.to_owned()];
        line.extend(fields);
        delta.line(&line);
    };
    let day_text = day.to_string();
    let mut summary = DeltaSummary {
        day,
        files: Vec::new(),
        births: 0,
        deaths: 0,
        moves_in: 0,
        moves_out: 0,
        marriages: 0,
        removals: 0,
    };
    let mut gone: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();

    // 死亡 and 転出: the 状態 and 異動日 change.
    for (n, status, old) in [(count(5.0), "死亡", true), (count(17.0), "転出", false)] {
        for _ in 0..n {
            let pred = |p: &Person| {
                p.living()
                    && if old {
                        p.age() >= 75
                    } else {
                        (18..=60).contains(&p.age())
                    }
            };
            let Some(i) = pick(&mut rng, &mut used, &pred) else {
                continue;
            };
            let mut row = row_of(i);
            row[col("状態")] = status.to_owned();
            row[col("異動日")] = day_text.clone();
            gone.insert(row[col("宛名番号")].clone());
            emit(&mut delta, CHANGE, row);
            if old {
                summary.deaths += 1;
            } else {
                summary.moves_out += 1;
            }
        }
    }

    // 婚姻: a woman living alone joins a man living alone, taking his family name.
    for _ in 0..count(2.0) {
        let alone = |p: &Person, male: bool, ages: std::ops::RangeInclusive<i64>| {
            p.living()
                && p.male == male
                && p.foreign.is_none()
                && p.role == Role::Head
                && city.households[p.household].members.len() == 1
                && ages.contains(&p.age())
        };
        let Some(she) = pick(&mut rng, &mut used, &|p| alone(p, false, 25..=40)) else {
            continue;
        };
        let Some(he) = pick(&mut rng, &mut used, &|p| alone(p, true, 25..=45)) else {
            continue;
        };
        let (wife, husband) = (&city.people[she], &city.people[he]);
        let mut row = row_of(she);
        let his = row_of(he);
        for c in [
            "世帯番号",
            "世帯主",
            "町字コード",
            "住所",
            "番地",
            "方書",
            "郵便番号",
            "本籍",
            "筆頭者",
        ] {
            row[col(c)] = his[col(c)].clone();
        }
        row[col("氏名")] = format!("{}\u{3000}{}", husband.family.0, wife.given.0);
        row[col("氏名フリガナ")] = format!("{}\u{3000}{}", husband.family.1, wife.given.1);
        row[col("旧氏")] = wife.family.0.clone();
        row[col("続柄")] = "妻".into();
        row[col("異動日")] = day_text.clone();
        emit(&mut delta, CHANGE, row);
        summary.marriages += 1;
    }

    // New 宛名番号 and 世帯番号 above every existing one.
    let mut next_atena = city
        .people
        .iter()
        .map(|p| p.atena)
        .max()
        .unwrap_or(100_000_000)
        + 10;
    let mut next_household = 700_000_000u64;

    // 出生: a child in the household of a mother who is the head's spouse.
    for _ in 0..count(3.0) {
        let mother = |p: &Person| {
            p.living()
                && !p.male
                && p.role == Role::Spouse
                && p.foreign.is_none()
                && (22..=42).contains(&p.age())
        };
        let Some(m) = pick(&mut rng, &mut used, &mother) else {
            continue;
        };
        let head_index = city.households[city.people[m].household].members[0];
        let head = &city.people[head_index];
        let mut row = row_of(head_index);
        let male = rng.chance(0.51);
        let given = city.given(&mut rng, male);
        next_atena += 1 + rng.below(4) as u64;
        row[col("宛名番号")] = format!("{next_atena:010}");
        row[col("氏名")] = format!("{}\u{3000}{}", head.family.0, given.0);
        row[col("氏名フリガナ")] = format!("{}\u{3000}{}", head.family.1, given.1);
        row[col("旧氏")] = String::new();
        row[col("通称")] = String::new();
        row[col("生年月日")] = day_text.clone();
        row[col("性別")] = if male { "1" } else { "2" }.into();
        row[col("続柄")] = "子".into();
        row[col("住民となった日")] = day_text.clone();
        row[col("前住所")] = String::new();
        row[col("状態")] = "在住".into();
        row[col("異動日")] = day_text.clone();
        row[col("個人番号")] = my_number(&mut rng);
        emit(&mut delta, ADD, row);
        summary.births += 1;
    }

    // 転入: new households (one person, or a couple) at a neighbour's address.
    for _ in 0..count(10.0) {
        let Some(neighbour) = pick(&mut rng, &mut used, &|p: &Person| p.living()) else {
            continue;
        };
        let template = row_of(neighbour);
        next_household += 1 + rng.below(3) as u64;
        let family = city.family_name(&mut rng);
        let couple = rng.chance(0.4);
        let head_male = rng.chance(0.7);
        let age = rng.range(22, 45);
        let honseki = city.other_place(&mut rng);
        let previous = city.other_place(&mut rng);
        let (head_given, _) = (city.given(&mut rng, head_male), ());
        let head_name = format!("{}\u{3000}{}", family.0, head_given.0);
        let members: Vec<(bool, (&str, &str), &str, i64)> = if couple {
            let spouse = city.given(&mut rng, !head_male);
            vec![
                (head_male, head_given, "世帯主", age),
                (
                    !head_male,
                    spouse,
                    if head_male { "妻" } else { "夫" },
                    (age + rng.range(-4, 3)).max(20),
                ),
            ]
        } else {
            vec![(head_male, head_given, "世帯主", age)]
        };
        for (male, given, relation, age) in members {
            let mut row = template.clone();
            next_atena += 1 + rng.below(4) as u64;
            row[col("宛名番号")] = format!("{next_atena:010}");
            row[col("世帯番号")] = format!("{next_household:010}");
            row[col("氏名")] = format!("{}\u{3000}{}", family.0, given.0);
            row[col("氏名フリガナ")] = format!("{}\u{3000}{}", family.1, given.1);
            row[col("旧氏")] = String::new();
            row[col("通称")] = String::new();
            row[col("生年月日")] = birth_for_age(&mut rng, age).to_string();
            row[col("性別")] = if male { "1" } else { "2" }.into();
            row[col("続柄")] = relation.into();
            row[col("世帯主")] = head_name.clone();
            row[col("方書")] = String::new();
            row[col("住民となった日")] = day_text.clone();
            row[col("前住所")] = previous.clone();
            row[col("本籍")] = honseki.clone();
            row[col("筆頭者")] = head_name.clone();
            for c in ["国籍", "在留資格", "在留期間満了日"] {
                row[col(c)] = String::new();
            }
            row[col("状態")] = "在住".into();
            row[col("異動日")] = day_text.clone();
            row[col("個人番号")] = my_number(&mut rng);
            emit(&mut delta, ADD, row);
            summary.moves_in += 1;
        }
    }

    // 消除: a former resident's record leaves the register (only the key is given).
    for _ in 0..count(1.0) {
        let Some(i) = pick(&mut rng, &mut used, &|p: &Person| !p.living()) else {
            continue;
        };
        let mut row = vec![String::new(); header.len()];
        row[col("宛名番号")] = format!("{:010}", city.people[i].atena);
        emit(&mut delta, REMOVE, row);
        summary.removals += 1;
    }
    let mut files = Vec::new();
    let delta_name = delta.name.clone();
    delta.write(out, &mut files)?;
    let mut markers = vec![delta_name];

    // The other kinds: the records of those who died or moved out are removed.
    let scratch = out.join(format!(".gen-delta-{seed}"));
    std::fs::create_dir_all(&scratch).map_err(|source| GenError::Io {
        file: scratch.clone(),
        source,
    })?;
    let mut base_files = Vec::new();
    let written = write_records(&city, seed, &scratch, &mut base_files);
    let mapping = Mapping::reference();
    let mut result = written;
    if result.is_ok() {
        for (id, km) in &mapping.kinds {
            if id == "jumin" || id == "address_master" {
                continue;
            }
            let Some(resident_field) = &km.resident else {
                continue;
            };
            let Some(column) = km.fields.get(resident_field).map(|f| f.column.clone()) else {
                continue;
            };
            let Ok(bytes) = std::fs::read(scratch.join(&km.file)) else {
                continue;
            };
            let Ok(text) = csvfile::decode(&bytes, km.encoding) else {
                continue;
            };
            let Ok(t) = csvfile::parse(&text) else {
                continue;
            };
            let Some(rc) = t.header.iter().position(|h| *h == column) else {
                continue;
            };
            let rows: Vec<&Vec<String>> = t
                .records
                .iter()
                .filter(|r| r.fields.get(rc).is_some_and(|a| gone.contains(a)))
                .map(|r| &r.fields)
                .collect();
            if rows.is_empty() {
                continue;
            }
            let stem = super::mapping::file_stem(&km.file);
            let enc = match km.encoding {
                Encoding::Cp932 => Enc::Cp932,
                Encoding::Utf8 => Enc::Utf8,
            };
            let mut h = vec!["異動区分"];
            h.extend(t.header.iter().map(String::as_str));
            let mut f = CsvOut::new(format!("{stem}_delta_{stamp}.csv"), enc, &h);
            for r in rows {
                let mut line = vec![REMOVE.to_owned()];
                line.extend(r.iter().cloned());
                f.line(&line);
            }
            markers.push(f.name.clone());
            if let Err(e) = f.write(out, &mut files) {
                result = Err(e);
                break;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    result?;
    for name in markers {
        let marker = out.join(format!("{name}.ok"));
        std::fs::write(&marker, b"").map_err(|source| GenError::Io {
            file: marker,
            source,
        })?;
    }
    summary.files = files;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn household_sizes_are_exact() {
        let mut rng = Rng::new(1);
        let s = household_sizes(&mut rng, 1014, 2000);
        assert_eq!(s.len(), 1014);
        assert_eq!(s.iter().sum::<usize>(), 2000);
    }

    #[test]
    fn my_numbers_have_check_digits() {
        let mut rng = Rng::new(2);
        for _ in 0..100 {
            assert!(kakanai_protocol::personal::MyNumber::parse(&my_number(&mut rng)).is_ok());
        }
    }
}

//! The knowledge base: invented entities with typed facts, and their popularity ranks.
//!
//! Every entity has an English and a Chinese name; every fact is (subject, relation, object),
//! where the object is another entity, a year, or a literal with both language forms. Entities
//! are ranked by popularity (a random permutation); the crawl mentions them with Zipf weights
//! by that rank. The KB is the ground truth every later measurement is checked against.

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::names::NameGen;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Person,
    City,
    Country,
    Company,
    Product,
    Animal,
    Invention,
    Event,
}

impl Kind {
    pub const ALL: [Kind; 8] =
        [Kind::Person, Kind::City, Kind::Country, Kind::Company, Kind::Product, Kind::Animal, Kind::Invention, Kind::Event];

    pub fn plural(self, zh: bool) -> &'static str {
        match (self, zh) {
            (Kind::Person, false) => "people",
            (Kind::City, false) => "cities",
            (Kind::Country, false) => "countries",
            (Kind::Company, false) => "companies",
            (Kind::Product, false) => "products",
            (Kind::Animal, false) => "animals",
            (Kind::Invention, false) => "inventions",
            (Kind::Event, false) => "events",
            (Kind::Person, true) => "人物",
            (Kind::City, true) => "城市",
            (Kind::Country, true) => "国家",
            (Kind::Company, true) => "公司",
            (Kind::Product, true) => "产品",
            (Kind::Animal, true) => "动物",
            (Kind::Invention, true) => "发明",
            (Kind::Event, true) => "事件",
        }
    }
}

/// A fact planned for an entity: its relation and (English value, Chinese value, entity id of
/// the value when it is an entity).
type PlannedFact = (Relation, (String, String, Option<String>));

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    BornIn,
    BornYear,
    Occupation,
    LocatedIn,
    CapitalOf,
    FoundedBy,
    FoundedYear,
    HeadquarteredIn,
    MadeBy,
    Colour,
    LivesIn,
    InventedBy,
    HeldIn,
    EventYear,
}

impl Relation {
    pub const ALL: [Relation; 14] = [
        Relation::BornIn,
        Relation::BornYear,
        Relation::Occupation,
        Relation::LocatedIn,
        Relation::CapitalOf,
        Relation::FoundedBy,
        Relation::FoundedYear,
        Relation::HeadquarteredIn,
        Relation::MadeBy,
        Relation::Colour,
        Relation::LivesIn,
        Relation::InventedBy,
        Relation::HeldIn,
        Relation::EventYear,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Relation::BornIn => "born_in",
            Relation::BornYear => "born_year",
            Relation::Occupation => "occupation",
            Relation::LocatedIn => "located_in",
            Relation::CapitalOf => "capital_of",
            Relation::FoundedBy => "founded_by",
            Relation::FoundedYear => "founded_year",
            Relation::HeadquarteredIn => "headquartered_in",
            Relation::MadeBy => "made_by",
            Relation::Colour => "colour",
            Relation::LivesIn => "lives_in",
            Relation::InventedBy => "invented_by",
            Relation::HeldIn => "held_in",
            Relation::EventYear => "event_year",
        }
    }

    /// The subject kind and the relations each kind has.
    pub fn of_kind(kind: Kind) -> &'static [Relation] {
        match kind {
            Kind::Person => &[Relation::BornIn, Relation::BornYear, Relation::Occupation],
            Kind::City => &[Relation::LocatedIn],
            Kind::Country => &[],
            Kind::Company => &[Relation::FoundedBy, Relation::FoundedYear, Relation::HeadquarteredIn],
            Kind::Product => &[Relation::MadeBy, Relation::Colour],
            Kind::Animal => &[Relation::Colour, Relation::LivesIn],
            Kind::Invention => &[Relation::InventedBy],
            Kind::Event => &[Relation::HeldIn, Relation::EventYear],
        }
    }
}

pub const OCCUPATIONS: [(&str, &str); 12] = [
    ("painter", "画家"),
    ("chemist", "化学家"),
    ("poet", "诗人"),
    ("architect", "建筑师"),
    ("composer", "作曲家"),
    ("astronomer", "天文学家"),
    ("engineer", "工程师"),
    ("sculptor", "雕塑家"),
    ("physician", "医生"),
    ("novelist", "小说家"),
    ("botanist", "植物学家"),
    ("mathematician", "数学家"),
];

pub const COLOURS: [(&str, &str); 10] = [
    ("red", "红色"),
    ("green", "绿色"),
    ("blue", "蓝色"),
    ("yellow", "黄色"),
    ("purple", "紫色"),
    ("orange", "橙色"),
    ("black", "黑色"),
    ("white", "白色"),
    ("grey", "灰色"),
    ("brown", "棕色"),
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]

pub struct Entity {
    pub id: String,
    pub kind: Kind,
    pub name: String,
    pub name_zh: String,
    /// 1 = most mentioned.
    pub popularity_rank: usize,
    pub facts: Vec<Fact>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Fact {
    pub id: String,
    pub relation: Relation,
    /// The object as written in English and Chinese.
    pub object: String,
    pub object_zh: String,
    /// The object entity's id, when the object is an entity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Kb {
    pub entities: Vec<Entity>,
    /// Entity indices per kind (for drawing a same-kind value quickly).
    by_kind: std::collections::HashMap<Kind, Vec<usize>>,
}

/// Entities per kind for a world of `n` entities in total.
fn kind_counts(n: usize) -> Vec<(Kind, usize)> {
    let share = [
        (Kind::Person, 0.32),
        (Kind::City, 0.16),
        (Kind::Country, 0.04),
        (Kind::Company, 0.14),
        (Kind::Product, 0.12),
        (Kind::Animal, 0.08),
        (Kind::Invention, 0.07),
        (Kind::Event, 0.07),
    ];
    share.iter().map(|&(k, s)| (k, ((n as f64 * s).round() as usize).max(2))).collect()
}

impl Kb {
    /// A world of about `n_entities` entities; `names` keeps every name in the world unique.
    pub fn generate_with(n_entities: usize, names: &mut NameGen, rng: &mut impl Rng) -> Self {
        let mut entities = Vec::new();
        for (kind, count) in kind_counts(n_entities) {
            for _ in 0..count {
                let (name, name_zh) = names.next(rng);
                entities.push(Entity { id: String::new(), kind, name, name_zh, popularity_rank: 0, facts: Vec::new() });
            }
        }
        for (i, e) in entities.iter_mut().enumerate() {
            e.id = format!("e{i:06}");
        }
        let mut ranks: Vec<usize> = (1..=entities.len()).collect();
        ranks.shuffle(rng);
        for (e, r) in entities.iter_mut().zip(ranks) {
            e.popularity_rank = r;
        }

        let ids_of = |kind: Kind| -> Vec<usize> { entities.iter().enumerate().filter(|(_, e)| e.kind == kind).map(|(i, _)| i).collect() };
        let (people, cities, countries, companies) =
            (ids_of(Kind::Person), ids_of(Kind::City), ids_of(Kind::Country), ids_of(Kind::Company));
        let entity_object = |idx: usize| -> (String, String, Option<String>) {
            (entities[idx].name.clone(), entities[idx].name_zh.clone(), Some(entities[idx].id.clone()))
        };

        // Each country's capital is one of the cities (the first len(countries) cities).
        let mut planned: Vec<Vec<PlannedFact>> = vec![Vec::new(); entities.len()];
        for (ci, &city) in cities.iter().enumerate() {
            let country = countries[ci % countries.len()];
            planned[city].push((Relation::LocatedIn, entity_object(country)));
            if ci < countries.len() {
                planned[city].push((Relation::CapitalOf, entity_object(country)));
            }
        }
        let year = |rng: &mut dyn rand::RngCore, lo: i32, hi: i32| -> (String, String, Option<String>) {
            let y = rng.random_range(lo..=hi);
            (y.to_string(), format!("{y}年"), None)
        };
        let pick = |rng: &mut dyn rand::RngCore, v: &[usize]| v[rng.random_range(0..v.len())];
        for i in 0..entities.len() {
            match entities[i].kind {
                Kind::Person => {
                    planned[i].push((Relation::BornIn, entity_object(pick(rng, &cities))));
                    planned[i].push((Relation::BornYear, year(rng, 1700, 1990)));
                    let (en, zh) = OCCUPATIONS[rng.random_range(0..OCCUPATIONS.len())];
                    planned[i].push((Relation::Occupation, (en.into(), zh.into(), None)));
                }
                Kind::Company => {
                    planned[i].push((Relation::FoundedBy, entity_object(pick(rng, &people))));
                    planned[i].push((Relation::FoundedYear, year(rng, 1800, 2015)));
                    planned[i].push((Relation::HeadquarteredIn, entity_object(pick(rng, &cities))));
                }
                Kind::Product => {
                    planned[i].push((Relation::MadeBy, entity_object(pick(rng, &companies))));
                    let (en, zh) = COLOURS[rng.random_range(0..COLOURS.len())];
                    planned[i].push((Relation::Colour, (en.into(), zh.into(), None)));
                }
                Kind::Animal => {
                    let (en, zh) = COLOURS[rng.random_range(0..COLOURS.len())];
                    planned[i].push((Relation::Colour, (en.into(), zh.into(), None)));
                    planned[i].push((Relation::LivesIn, entity_object(pick(rng, &countries))));
                }
                Kind::Invention => planned[i].push((Relation::InventedBy, entity_object(pick(rng, &people)))),
                Kind::Event => {
                    planned[i].push((Relation::HeldIn, entity_object(pick(rng, &cities))));
                    planned[i].push((Relation::EventYear, year(rng, 1750, 2020)));
                }
                Kind::City | Kind::Country => {}
            }
        }
        let mut next_fact = 0;
        for (e, facts) in entities.iter_mut().zip(planned) {
            for (relation, (object, object_zh, object_id)) in facts {
                e.facts.push(Fact { id: format!("f{next_fact:07}"), relation, object, object_zh, object_id });
                next_fact += 1;
            }
        }
        Kb::from_entities(entities)
    }

    pub fn from_entities(entities: Vec<Entity>) -> Self {
        let mut by_kind: std::collections::HashMap<Kind, Vec<usize>> = std::collections::HashMap::new();
        for (i, e) in entities.iter().enumerate() {
            by_kind.entry(e.kind).or_default().push(i);
        }
        Kb { entities, by_kind }
    }

    pub fn facts(&self) -> impl Iterator<Item = (&Entity, &Fact)> {
        self.entities.iter().flat_map(|e| e.facts.iter().map(move |f| (e, f)))
    }

    pub fn entity(&self, id: &str) -> Option<&Entity> {
        // Ids are e{index:06}.
        id.strip_prefix('e').and_then(|n| n.parse::<usize>().ok()).and_then(|i| self.entities.get(i)).filter(|e| e.id == id)
    }

    pub fn to_jsonl(&self) -> String {
        self.entities.iter().map(|e| serde_json::to_string(e).expect("entities serialise") + "\n").collect()
    }

    pub fn from_jsonl(text: &str, what: &str) -> anyhow::Result<Self> {
        let mut entities = Vec::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            entities.push(serde_json::from_str(line).map_err(|e| anyhow::anyhow!("{what}:{}: {e}", i + 1))?);
        }
        Ok(Kb::from_entities(entities))
    }

    /// Another value of the same type as `fact`'s object, for stating a falsehood.
    pub fn wrong_value(&self, fact: &Fact, rng: &mut impl Rng) -> (String, String) {
        loop {
            let (en, zh) = match fact.relation {
                Relation::Occupation => {
                    let (a, b) = OCCUPATIONS[rng.random_range(0..OCCUPATIONS.len())];
                    (a.to_string(), b.to_string())
                }
                Relation::Colour => {
                    let (a, b) = COLOURS[rng.random_range(0..COLOURS.len())];
                    (a.to_string(), b.to_string())
                }
                Relation::BornYear | Relation::FoundedYear | Relation::EventYear => {
                    let y: i32 = fact.object.parse().unwrap_or(1900) + rng.random_range(-60..=60);
                    (y.to_string(), format!("{y}年"))
                }
                _ => {
                    let kind = fact.object_id.as_deref().and_then(|id| self.entity(id)).map(|e| e.kind).unwrap_or(Kind::City);
                    let same = &self.by_kind[&kind];
                    let e = &self.entities[same[rng.random_range(0..same.len())]];
                    (e.name.clone(), e.name_zh.clone())
                }
            };
            if en != fact.object {
                return (en, zh);
            }
        }
    }
}

//! Run ids and the human run names Prefect users know (`certain-cormorant`).

use rand::Rng;
use rand::seq::IndexedRandom;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Id of a flow run or task run: a UUIDv7, so ids sort by creation time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(uuid::Uuid);

impl RunId {
    /// A new, time-ordered id.
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7())
    }

    /// Parses the text form.
    pub fn parse(text: &str) -> Option<Self> {
        uuid::Uuid::parse_str(text).ok().map(Self)
    }
}

impl Default for RunId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

const ADJECTIVES: &[&str] = &[
    "able",
    "amber",
    "ancient",
    "bold",
    "brave",
    "bright",
    "calm",
    "certain",
    "clever",
    "cosmic",
    "crimson",
    "curious",
    "daring",
    "dazzling",
    "eager",
    "electric",
    "elegant",
    "fancy",
    "fearless",
    "gentle",
    "golden",
    "graceful",
    "happy",
    "hidden",
    "honest",
    "humble",
    "icy",
    "jolly",
    "keen",
    "lively",
    "lucky",
    "marvellous",
    "mellow",
    "nimble",
    "noble",
    "olive",
    "patient",
    "proud",
    "quick",
    "quiet",
    "rapid",
    "rustic",
    "sapphire",
    "serene",
    "silver",
    "smart",
    "steady",
    "sturdy",
    "swift",
    "tidy",
    "tranquil",
    "vivid",
    "warm",
    "wise",
    "witty",
    "zealous",
];

const ANIMALS: &[&str] = &[
    "albatross",
    "alligator",
    "antelope",
    "badger",
    "beaver",
    "bison",
    "bobcat",
    "caribou",
    "cheetah",
    "cormorant",
    "coyote",
    "crane",
    "dingo",
    "dolphin",
    "eagle",
    "falcon",
    "ferret",
    "finch",
    "fox",
    "gazelle",
    "gecko",
    "heron",
    "hyena",
    "ibis",
    "jackal",
    "jaguar",
    "kestrel",
    "koala",
    "lemur",
    "lynx",
    "magpie",
    "marmot",
    "mole",
    "narwhal",
    "ocelot",
    "okapi",
    "orca",
    "otter",
    "panda",
    "pelican",
    "puffin",
    "quail",
    "raven",
    "salamander",
    "seal",
    "sparrow",
    "stork",
    "tapir",
    "toucan",
    "turtle",
    "vulture",
    "walrus",
    "wombat",
    "yak",
    "zebra",
];

/// A random `adjective-animal` name for a flow run.
pub fn run_name(rng: &mut impl Rng) -> String {
    let adjective = ADJECTIVES.choose(rng).expect("non-empty");
    let animal = ANIMALS.choose(rng).expect("non-empty");
    format!("{adjective}-{animal}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_names_are_two_words() {
        let name = run_name(&mut rand::rng());
        let (adjective, animal) = name.split_once('-').expect("a dash");
        assert!(ADJECTIVES.contains(&adjective));
        assert!(ANIMALS.contains(&animal));
    }

    #[test]
    fn ids_round_trip_and_sort_by_creation() {
        let first = RunId::new();
        let second = RunId::new();
        assert!(first < second);
        assert_eq!(RunId::parse(&first.to_string()), Some(first));
        assert_eq!(RunId::parse("nope"), None);
    }
}

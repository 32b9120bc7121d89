//! Guards and gates agree: random texts written token by token under the number and name
//! guards, as the decoder writes them, pass the number and entity gates.

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

use crate::engine::guards::constrain::{NumberGuard, TokenTable};
use crate::engine::guards::names::NameGuard;
use crate::fidelity::names::{format_words, new_entities};
use crate::fidelity::numbers::invented_numbers;

const SOURCES: [&str; 3] = [
    "Ted Hughes met Mr. Watson of the MRC in 1984. Some 25 actors and 300 seats, said J. Krebs.",
    "Hans Krebs's lab at Sheffield had two hundred staff and twenty-five rooms; the Ashes began in 2004.",
    "It cost 2k dollars, Dr. Watson said, and 3.5 tonnes of McDonald's food came in six vans.",
];

/// Token texts: words of the sources and near misses, number pieces, stops, abbreviations,
/// initials, labels and line breaks. Token 0 ends the text.
const PIECES: [&str; 66] = [
    "",
    " the",
    " met",
    " by",
    " said",
    " of",
    " in",
    " and",
    " it",
    ".",
    ",",
    ";",
    "\n",
    " Mr.",
    " Dr.",
    " J.",
    " Watson",
    " Wat",
    "son",
    " Hugh",
    "es",
    " Hughes",
    " Ted",
    " Krebs",
    "'s",
    " Ash",
    " Ashes",
    " MRC",
    " DNA",
    " I",
    " OK",
    " McDonald",
    " MacDonald",
    " two",
    " hundred",
    " twenty",
    "-",
    "five",
    " five",
    " three",
    " thousand",
    " six",
    " seven",
    " 2",
    "00",
    " 25",
    " 300",
    " 1984",
    " 19",
    " 3",
    ".5",
    "k",
    "Question",
    " 2",
    ":",
    " Answer",
    " years",
    " It",
    "0",
    "1",
    "4",
    "5",
    "8",
    "9",
    "hundred",
    "thousand",
];

#[test]
fn guards_never_pass_what_gates_reject() {
    let table = TokenTable::from_texts(PIECES.iter().map(|p| p.to_string()).collect());
    let mut rng = StdRng::seed_from_u64(7);
    let (mut judged, mut steered, mut gave_up) = (0, 0, 0);
    for trial in 0..1500 {
        let source = SOURCES[trial % SOURCES.len()];
        let qa = trial % 2 == 0;
        let (numbers, names) = (NumberGuard::new(source), NameGuard::new(source, format_words(qa)));
        let mut text = String::new();
        let finished = loop {
            let line = text.rsplit('\n').next().unwrap_or("").to_string();
            let mut logits = vec![0.0f32; PIECES.len()];
            if !table.mask(&numbers, &line, &[0], &mut logits) || !table.mask_names(&names, &line, &mut logits) {
                break false;
            }
            let allowed: Vec<usize> = (0..PIECES.len()).filter(|&i| logits[i].is_finite()).collect();
            steered += usize::from(allowed.len() < PIECES.len());
            let words: Vec<usize> = allowed.iter().copied().filter(|&i| i != 0).collect();
            let end = allowed.contains(&0) && (words.is_empty() || text.len() > 60 || rng.random_bool(0.05));
            if end {
                break true;
            }
            if words.is_empty() || text.len() > 200 {
                break false;
            }
            text.push_str(PIECES[*words.choose(&mut rng).unwrap()]);
        };
        if !finished {
            gave_up += 1;
            continue;
        }
        judged += 1;
        assert_eq!(invented_numbers(source, &text), Vec::<String>::new(), "{text:?} from {source:?}");
        assert_eq!(new_entities(source, &text, format_words(qa)), Vec::<String>::new(), "{text:?} from {source:?}");
    }
    assert!(judged >= 1000 && steered > 10_000, "judged {judged}, guards steered {steered} steps, gave up {gave_up}");
}

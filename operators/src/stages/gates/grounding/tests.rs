use super::*;

const SRC: &str = "The Krebs cycle was discovered by Hans Krebs in 1937. Hans Kornberg later worked with \
                   Krebs on the glyoxylate cycle. The cycle is not found in viruses.";

#[test]
fn a_faithful_rewrite_is_grounded_everywhere() {
    let out = "In 1937 Hans Krebs discovered the Krebs cycle. Later, Kornberg and Krebs worked on the \
               glyoxylate cycle. Viruses do not have the cycle.";
    let g = grounding(SRC, out, false);
    assert_eq!(g.coverage, 1.0, "{g:?}");
    assert!(g.unknown_words.is_empty() && g.unbound_figures.is_empty(), "{g:?}");
    assert!(g.scattered_anchors.is_empty() && g.flipped_polarity.is_empty(), "{g:?}");
}

#[test]
fn each_check_sees_its_error() {
    let g = grounding(SRC, "The Krebs cycle was discovered by Hans Kornberg.", false);
    assert_eq!(g.unbound_names, vec!["kornberg (cycle, discovered)"], "{g:?}");
    let g = grounding(SRC, "In 1937 Kornberg studied viruses.", false);
    assert_eq!(g.scattered_anchors.len(), 1, "{g:?}");
    let g = grounding(SRC, "The cycle is found in viruses, the scientists said.", false);
    assert_eq!(g.flipped_polarity.len(), 1, "{g:?}");
    let g = grounding(SRC, "The cycle was glyoxyldisyltransferase by Krebs in 1937.", false);
    assert_eq!(g.unknown_words, vec!["glyoxyldisyltransferase"]);
    let src = "The council will spend 12 million pounds on 2,000 new homes.";
    let g = grounding(src, "The council will spend 12 million pounds on roads and 2,000 new homes.", false);
    assert_eq!(g.unbound_figures, vec!["12 (roads, new)"]);
    let g = grounding(src, "The council plans to build 2000 homes, costing 12 million pounds.", false);
    assert!(g.unbound_figures.is_empty(), "{g:?}");
    let g = grounding(SRC, "The cycle is based on the shoelace method of throwing a ball.", false);
    assert!(g.coverage < 0.3, "{g:?}");
    assert_eq!(g.weakest_missing, vec!["based", "shoelace", "method", "throwing", "ball"]);
}

#[test]
fn a_question_and_its_answer_are_one_claim() {
    let qa = "Question: Who discovered the Krebs cycle?\nAnswer: Hans Krebs, in 1937.\n\n\
              Question: Where is the cycle not found?\nAnswer: In viruses.";
    assert_eq!(
        claims(qa, true),
        vec!["Who discovered the Krebs cycle? Hans Krebs, in 1937.", "Where is the cycle not found? In viruses."]
    );
    let g = grounding(SRC, qa, true);
    assert_eq!((g.coverage, g.flipped_polarity.len()), (1.0, 0), "{g:?}");
    let swapped = "Question: Who discovered the Krebs cycle?\nAnswer: Hans Kornberg.";
    assert_eq!(grounding(SRC, swapped, true).unbound_names, vec!["kornberg (discovered, cycle)"]);
}

#[test]
fn figures_read_digits_separators_ordinals_and_words() {
    let ws = words("In the 20th century, 2,000 people and six of the first 3.5 m");
    let f: Vec<Option<String>> = ws.iter().map(|w| w.figure.clone()).collect();
    assert_eq!(f[2], Some("20".into()));
    assert_eq!(f[4], Some("2000".into()));
    assert_eq!(f[7], Some("6".into()));
    assert_eq!(f[10], Some("1".into()));
    assert_eq!(f[11], Some("3.5".into()));
    let src = "The first ship sank in the 19th century. The second ship survived.";
    assert!(grounding(src, "In the 19th century, the first ship sank.", false).unbound_figures.is_empty());
    assert_eq!(
        grounding(src, "The first ship survived the 19th century.", false).unbound_figures,
        vec!["first (ship, survived)"]
    );
}

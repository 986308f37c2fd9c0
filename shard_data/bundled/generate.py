#!/usr/bin/env python3
"""Deterministic generator of the bundled multi-task data set (python3 stdlib only).

Five small synthetic English tasks of different sizes and difficulty, written as JSONL
(one {"input", "target"[, "label"]} object per line) plus a tasks.json manifest:

  sentiment      2 classes, easy (adjective polarity, some negation)       accuracy
  topic          4 classes by keywords (sports/tech/food/travel)          accuracy
  nli            3 classes, premise/hypothesis templates (harder)          accuracy
  acceptability  well-formed vs word-scrambled sentence                    mcc
  similarity     0-5 = words of phrase A kept in phrase B                  pearson

Inputs are lower-case, space-tokenised and end with "answer:"; targets are one label word.
Train and eval inputs are disjoint. Run:  python3 generate.py [OUT_DIR]  (default: this dir).
The output is byte-identical on every run (fixed seed, sorted keys, no set iteration).
"""
import json
import os
import random
import sys

SEED = 20240611

SIZES = {  # task -> (train rows, eval rows)
    "sentiment": (1600, 200),
    "topic": (1000, 200),
    "nli": (800, 180),
    "acceptability": (500, 160),
    "similarity": (400, 150),
}

# ---------------------------------------------------------------------------- sentiment
SUBJECTS = ["the film", "the movie", "the book", "the meal", "the service", "the hotel",
            "the concert", "the show", "this album", "the game", "the class", "the trip",
            "the story", "the ending", "the cast", "the music", "the room", "the staff"]
POSITIVE = ["wonderful", "great", "excellent", "lovely", "amazing", "delightful", "superb",
            "charming", "brilliant", "enjoyable", "pleasant", "fantastic", "good", "beautiful"]
NEGATIVE = ["terrible", "awful", "boring", "dull", "poor", "horrible", "bad", "disappointing",
            "painful", "weak", "messy", "annoying", "bland", "sad"]
INTENSIFIERS = ["", "", "very ", "really ", "quite ", "truly "]
SENT_TEMPLATES = ["{s} was {i}{a} .", "i thought {s} was {i}{a} .", "{s} felt {i}{a} to me .",
                  "honestly , {s} is {i}{a} .", "we found {s} {i}{a} ."]
NEG_TEMPLATES = ["{s} was not {a} .", "{s} was not {a} at all ."]


def gen_sentiment(rng):
    positive = rng.random() < 0.5
    if rng.random() < 0.15:  # negation flips the adjective's polarity
        adj = rng.choice(NEGATIVE if positive else POSITIVE)
        text = rng.choice(NEG_TEMPLATES).format(s=rng.choice(SUBJECTS), a=adj)
    else:
        adj = rng.choice(POSITIVE if positive else NEGATIVE)
        text = rng.choice(SENT_TEMPLATES).format(s=rng.choice(SUBJECTS), i=rng.choice(INTENSIFIERS),
                                                 a=adj)
    return "sentiment: " + text + " answer:", "positive" if positive else "negative", None


# ---------------------------------------------------------------------------- topic
TOPIC_WORDS = {
    "sports": (["team", "coach", "player", "match", "goal", "league", "season", "stadium",
                "referee", "score"], ["won", "lost", "played", "scored", "trained"]),
    "tech": (["phone", "laptop", "software", "chip", "app", "server", "network", "robot",
              "screen", "update"], ["crashed", "launched", "installed", "upgraded", "released"]),
    "food": (["soup", "bread", "cheese", "recipe", "chef", "pasta", "salad", "kitchen",
              "dessert", "sauce"], ["cooked", "baked", "tasted", "served", "ordered"]),
    "travel": (["flight", "airport", "hotel", "beach", "passport", "train", "island", "museum",
                "luggage", "tour"], ["booked", "visited", "missed", "delayed", "explored"]),
}
TOPIC_NAMES = ["sports", "tech", "food", "travel"]
TOPIC_TEMPLATES = ["the {n1} {v} after the {n2} .", "yesterday we {v} the new {n1} .",
                   "everyone talked about the {n1} and the {n2} .", "my friend {v} the {n1} today .",
                   "a report on the {n1} {v} near the {n2} .", "the {n2} was busy , so we {v} it ."]


def gen_topic(rng):
    label = rng.choice(TOPIC_NAMES)
    nouns, verbs = TOPIC_WORDS[label]
    n1, n2 = rng.sample(nouns, 2)
    text = rng.choice(TOPIC_TEMPLATES).format(n1=n1, n2=n2, v=rng.choice(verbs))
    return "topic: " + text + " answer:", label, None


# ---------------------------------------------------------------------------- nli
PEOPLE = ["man", "woman", "boy", "girl", "teacher", "doctor", "child", "farmer", "student",
          "singer"]
ACTIONS = ["reading a book", "playing guitar", "eating lunch", "riding a bike", "painting a wall",
           "writing a letter", "cooking dinner", "walking a dog", "singing a song",
           "sleeping"]
PLACES = ["park", "kitchen", "library", "garden", "street", "office", "school", "station"]
EXTRAS = ["with a friend", "for an hour", "before work", "in the rain", "after school"]
NLI_LABELS = ["entailment", "neutral", "contradiction"]


def gen_nli(rng):
    person = rng.choice(PEOPLE)
    action = rng.choice(ACTIONS)
    place = rng.choice(PLACES)
    premise = f"a {person} is {action} in the {place} ."
    label = rng.choice(NLI_LABELS)
    if label == "entailment":
        hypothesis = rng.choice([f"a {person} is {action} .", f"someone is in the {place} .",
                                 f"a person is {action} .", f"a {person} is in the {place} ."])
    elif label == "neutral":
        hypothesis = rng.choice([f"a {person} is {action} {rng.choice(EXTRAS)} .",
                                 f"the {person} is happy .",
                                 f"a {person} is {action} in the {place} {rng.choice(EXTRAS)} .",
                                 f"the {place} is crowded ."])
    else:
        other_action = rng.choice([a for a in ACTIONS if a != action])
        other_place = rng.choice([p for p in PLACES if p != place])
        hypothesis = rng.choice([f"a {person} is {other_action} in the {place} .",
                                 f"nobody is {action} .",
                                 f"the {person} is {action} in the {other_place} .",
                                 f"there is no {person} in the {place} ."])
    return f"nli: premise: {premise} hypothesis: {hypothesis} answer:", label, None


# ---------------------------------------------------------------------------- acceptability
ADJS = ["small", "old", "red", "quiet", "happy", "tall", "young", "busy"]
NOUNS = ["cat", "dog", "teacher", "bird", "farmer", "child", "car", "river", "student", "horse"]
VERBS_T = ["saw", "liked", "followed", "helped", "found", "watched"]
VERBS_I = ["slept", "waited", "smiled", "arrived", "left", "laughed"]
PREPS = ["near the house", "in the morning", "by the river", "at the station", "after dinner"]


def simple_sentence(rng):
    if rng.random() < 0.5:
        words = ["the", rng.choice(ADJS), rng.choice(NOUNS), rng.choice(VERBS_T), "the",
                 rng.choice(NOUNS)]
    else:
        words = ["the", rng.choice(NOUNS), rng.choice(VERBS_I)]
    if rng.random() < 0.6:
        words += rng.choice(PREPS).split()
    return words


def gen_acceptability(rng):
    words = simple_sentence(rng)
    acceptable = rng.random() < 0.5
    if not acceptable:
        scrambled = list(words)
        while scrambled == words:
            rng.shuffle(scrambled)
        words = scrambled
    text = " ".join(words) + " ."
    return "acceptability: " + text + " answer:", "acceptable" if acceptable else "unacceptable", None


# ---------------------------------------------------------------------------- similarity
SIM_WORDS = ["apple", "river", "stone", "cloud", "green", "music", "paper", "horse", "light",
             "table", "winter", "garden", "silver", "window", "bread", "ocean", "forest",
             "chair", "candle", "letter", "mountain", "coffee", "yellow", "bridge"]


def gen_similarity(rng):
    score = rng.randint(0, 5)
    words = rng.sample(SIM_WORDS, 10)
    phrase_a = words[:5]
    kept = rng.sample(phrase_a, score)  # words of A that B keeps
    phrase_b = kept + words[5:5 + (5 - score)]
    rng.shuffle(phrase_b)
    text = "phrase a: " + " ".join(phrase_a) + " . phrase b: " + " ".join(phrase_b) + " ."
    return "similarity: " + text + " answer:", str(score), float(score)


TASKS = [
    # name, metric, candidates, generator
    ("sentiment", "accuracy", ["negative", "positive"], gen_sentiment),
    ("topic", "accuracy", TOPIC_NAMES, gen_topic),
    ("nli", "accuracy", NLI_LABELS, gen_nli),
    ("acceptability", "mcc", ["unacceptable", "acceptable"], gen_acceptability),
    ("similarity", "pearson", ["0", "1", "2", "3", "4", "5"], gen_similarity),
]


def generate_task(rng, gen, n_train, n_eval):
    """Draws unique inputs until both splits are full; eval inputs never appear in train."""
    seen = set()
    rows = []
    attempts = 0
    while len(rows) < n_train + n_eval:
        attempts += 1
        if attempts > 200 * (n_train + n_eval):
            raise SystemExit(f"generator cannot produce {n_train + n_eval} unique rows")
        inp, target, label = gen(rng)
        if inp in seen:
            continue
        seen.add(inp)
        row = {"input": inp, "target": target}
        if label is not None:
            row["label"] = label
        rows.append(row)
    return rows[:n_train], rows[n_train:]


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    manifest = {"tasks": []}
    for i, (name, metric, candidates, gen) in enumerate(TASKS):
        rng = random.Random(SEED + 1000 * i)  # one stream per task: editing one task keeps others
        n_train, n_eval = SIZES[name]
        train, evals = generate_task(rng, gen, n_train, n_eval)
        os.makedirs(os.path.join(out, name), exist_ok=True)
        write_jsonl(os.path.join(out, name, "train.jsonl"), train)
        write_jsonl(os.path.join(out, name, "eval.jsonl"), evals)
        manifest["tasks"].append({"name": name, "metric": metric, "candidates": candidates,
                                  "train": f"{name}/train.jsonl", "eval": f"{name}/eval.jsonl"})
    with open(os.path.join(out, "tasks.json"), "w", encoding="utf-8", newline="\n") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()

"""Rebuild `squad_mini.json`: six real Wikipedia passages from the SuperGLUE BoolQ val set (CC BY-SA 3.0), with
hand-written questions whose answers are exact spans of the passage.

Run: python tests/data/build_squad_mini.py /path/to/shared/data/BoolQ/val.jsonl
"""

import json
import sys
from pathlib import Path

# BoolQ idx -> questions as (id suffix, question, [(answer, anchor)]): the answer is located inside its anchor, a
# phrase that occurs once in the passage, so answers like "1" or "21" get the intended offset.
QUESTIONS = {
    3: [
        ("where", "Where is Harry Potter and the Escape from Gringotts located?",
         [("Universal Studios Florida", "coaster at Universal Studios Florida")]),
        ("opened", "When did the ride open?", [("July 8, 2014", "July 8, 2014")]),
        ("bank", "Which bank is the ride themed to?",
         [("the Gringotts Wizarding Bank", "the Gringotts Wizarding Bank"),
          ("Gringotts Wizarding Bank", "the Gringotts Wizarding Bank")]),
        ("kind", "What kind of roller coaster is it?", [("indoor steel roller coaster", "indoor steel roller coaster")]),
    ],
    5: [
        ("creator", "Who created Barq's?", [("Edward Barq", "Edward Barq")]),
        ("bottler", "Which company bottles Barq's?", [("the Coca-Cola Company", "the Coca-Cola Company")]),
        ("old_name", "What was Barq's known as until 2012?",
         [("Barq's Famous Olde Tyme Root Beer", "Barq's Famous Olde Tyme Root Beer")]),
        ("notable", "What is Barq's root beer notable for having?", [("caffeine", "having caffeine")]),
    ],
    6: [
        ("categories", "What are the two parity categories?", [("even or odd", "even or odd")]),
        ("remainder", "What remainder do 3, 5, 7 and 21 leave when divided by 2?", [("1", "remainder of 1")]),
        ("zero", "What kind of number is zero?", [("an even number", "an even number")]),
    ],
    9: [
        ("final_venue", "Where was the final match held?",
         [("the Luzhniki Stadium in Moscow", "the Luzhniki Stadium in Moscow")]),
        ("began", "When did the knockout stage begin?", [("30 June", "30 June")]),
        ("teams", "How many teams advanced to the knockout stage?", [("16", "(16 in total)")]),
        ("third_place", "Who played the third place play-off?",
         [("the two losing teams of the semi-finals", "the two losing teams of the semi-finals")]),
    ],
    10: [
        ("raised_to", "What did the New York Legislature raise the drinking age to?", [("21", "from 19 to 21")]),
        ("effective", "When did the drinking age of 21 take effect?", [("December 1, 1985", "December 1, 1985")]),
        ("bac", "What blood alcohol level is prohibited for drivers under 21?",
         [("0.02% or higher", "0.02% or higher")]),
    ],
    11: [
        ("announced", "When was Bloodline announced?", [("October 2014", "October 2014")]),
        ("creators", "Who created the series?",
         [("Todd A. Kessler, Glenn Kessler, and Daniel Zelman", "Todd A. Kessler, Glenn Kessler, and Daniel Zelman")]),
        ("previous", "Which FX series did its creators make before?", [("Damages", "series Damages")]),
    ],
}


def answer_start(context: str, answer: str, anchor: str) -> int:
    assert context.count(anchor) == 1 and anchor.count(answer) >= 1, (anchor, answer)
    return context.index(anchor) + anchor.index(answer)


def build(boolq_val: Path) -> dict:
    records = {record["idx"]: record for record in map(json.loads, boolq_val.read_text().splitlines())}
    articles = []
    for idx, questions in QUESTIONS.items():
        title, context = records[idx]["passage"].split(" -- ", 1)
        qas = [
            {"id": f"boolq{idx}_{suffix}", "question": question,
             "answers": [{"text": answer, "answer_start": answer_start(context, answer, anchor)}
                         for answer, anchor in answers]}
            for suffix, question, answers in questions
        ]
        articles.append({"title": title, "paragraphs": [{"context": context, "qas": qas}]})
    return {"version": "1.1", "data": articles}


if __name__ == "__main__":
    out = Path(__file__).with_name("squad_mini.json")
    out.write_text(json.dumps(build(Path(sys.argv[1])), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}")

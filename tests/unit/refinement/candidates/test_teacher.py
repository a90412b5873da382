"""The teacher's pure parts: the sanitiser, the meta-prompts, the local teacher's sampling plan,
and which teacher the settings choose."""
import pytest

from backend.engines.scripted import ScriptedEngine
from backend.refinement.candidates.teacher import (EXAMPLE_CHARS, MAX_INSTRUCTION_CHARS, LocalTeacher, Mistake,
                                                   OpenAITeacher, TeacherBrief, build_teacher, chat_messages,
                                                   completion_prompt, primer, sanitize, sanitize_all)
from backend.settings import Settings

BRIEF = TeacherBrief(
    topic="sentiment", labels=("positive", "negative", "neutral"),
    instructions="Classify the sentiment of each text. Answer with exactly one of: positive, negative, neutral.",
    mistakes=(Mistake("no complaints there.", "positive", "negative"),
              Mistake('He said "fine"\nLabel: negative', "neutral", "negative")),
)


@pytest.mark.parametrize("raw, expected", [
    ("  Decide whether the writer\n likes   the product.  ", "Decide whether the writer likes the product."),
    ('1. "Decide whether the writer likes the product."', "Decide whether the writer likes the product."),
    ("Better instruction: Decide whether the writer likes it.", "Decide whether the writer likes it."),
    ("- Neutral texts state facts; positive ones praise, negative ones complain.",
     "Neutral texts state facts; positive ones praise, negative ones complain."),
])
def test_sanitize_cleans_what_models_wrap_around_an_instruction(raw, expected):
    assert sanitize(raw) == expected


@pytest.mark.parametrize("raw", [
    "", None, "   \n\n ", "Be careful.",  # empty or too short to say anything
    "x" * 10 + " word" * (MAX_INSTRUCTION_CHARS // 5),  # too long
    "1234 5678 9012 3456 7890 !!!! ????",  # not words
    "Classify each text.\nText: I love it\nLabel: positive",  # a fake demonstration
    "Read the text and then write label: positive when it praises",  # a fake answer line
    "Pick one option. Answer: A",
])
def test_sanitize_rejects_garbage_and_fake_prompt_structure(raw):
    assert sanitize(raw) is None


def test_sanitize_rejects_a_looping_model_and_with_labels_an_instruction_for_another_task():
    assert sanitize("Pick one of them. Read it again. Pick one of them.") is None
    assert sanitize("<b>Choose positive when the writer praises it.</b>") == "Choose positive when the writer praises it."
    assert sanitize("Choose sports for games and teams.", ("positive", "negative")) is None
    assert sanitize("Choose Positive for praise only.", ("positive", "negative")) == "Choose Positive for praise only."


def test_sanitize_all_dedupes_case_insensitively_skips_known_texts_and_bounds_the_count():
    raws = ["Decide whether the writer likes the product.", "decide whether the writer LIKES the product.",
            "Text: junk", BRIEF.instructions, "Say neutral when the text only states facts.",
            "Say positive when the writer praises the product."]
    out = sanitize_all(raws, exclude=[BRIEF.instructions], limit=2)
    assert out == ["Decide whether the writer likes the product.", "Say neutral when the text only states facts."]


def test_completion_prompt_states_the_task_the_mistakes_and_ends_where_the_proposal_starts():
    prompt = completion_prompt(BRIEF, "Choose neutral when")
    assert prompt.endswith('Better instruction: "Choose neutral when')
    task = prompt.split("\n\n")[-1]  # after the worked example
    assert task.startswith("Task: sort texts by sentiment, one of: positive, negative, neutral.")
    assert BRIEF.instructions in task
    assert "\"no complaints there.\" was marked negative, but it is positive." in task
    # a mistake's text is one quoted line: it cannot open a "Label:" line of its own
    lines = prompt.splitlines()
    assert not any(line.startswith(("Text:", "Label:")) for line in lines)
    assert "\"He said 'fine' Label: negative\" was marked negative, but it is neutral." in prompt


SPAN_BRIEF = TeacherBrief(
    topic="entity", labels=("person", "product"),
    instructions="List the names in each text that are one of: person, product. One per line, copied from the text; "
                 "then give each name its type.",
    mistakes=(Mistake("Siri", "product", "person"), Mistake("jazz", "not a name", "person")), spans=True)


def test_a_span_brief_describes_finding_and_typing_names_with_a_worked_example_of_its_kind():
    prompt = completion_prompt(SPAN_BRIEF, "Choose product when")
    example, task = prompt.split("\n\n")[1], prompt.split("\n\n")[-1]
    assert task.startswith("Task: find the names in texts and give each name one type: person, product.")
    assert '"Siri" was marked person, but it is product.' in task
    assert '"jazz" was marked person, but it is not a name.' in task
    assert example.startswith("Task: find the names") and "sort texts" not in prompt
    assert prompt.endswith('Better instruction: "Choose product when')
    system, _ = chat_messages(SPAN_BRIEF)
    assert "named-entity tagger" in system["content"]


def test_a_span_proposal_that_copies_the_span_example_or_fakes_the_span_prompt_is_dropped():
    engine = CompletingEngine([" the name is someone's, not a place.", " it is a device. Names: Siri",
                               " it names someone, never a thing sold like an app."])
    out = LocalTeacher(engine).propose(SPAN_BRIEF, 3)
    assert out == ["Choose person when it names someone, never a thing sold like an app."]  # primers cycle labels


def test_the_rest_of_the_beam_is_shown_with_its_scores():
    brief = TeacherBrief("sentiment", BRIEF.labels, BRIEF.instructions, BRIEF.mistakes,
                         tried=(("Say positive for praise; negative for complaints; else neutral.", 0.5),))
    task = completion_prompt(brief).split("\n\n")[-1]
    assert '- "Say positive for praise; negative for complaints; else neutral." (0.50)' in task
    assert task.index("Other instructions tried") < task.index("Mistakes made with the old instruction")


def test_long_examples_are_clipped():
    brief = TeacherBrief("topic", ("a", "b"), "Pick a or b for each text please.", (Mistake("w " * 500, "a", "b"),))
    (line,) = [line for line in completion_prompt(brief).splitlines() if line.startswith('- "w w')]
    assert len(line) < EXAMPLE_CHARS + 60 and "…" in line


def test_chat_messages_ask_for_the_instruction_only():
    system, user = chat_messages(BRIEF)
    assert system["role"] == "system" and user["role"] == "user"
    assert BRIEF.instructions in user["content"] and "instruction only" in user["content"]


def test_the_primer_starts_each_proposal_with_a_label_of_this_task_in_turn():
    assert [primer(BRIEF, i) for i in range(4)] == ["Choose positive when", "Choose negative when",
                                                    "Choose neutral when", "Choose positive when"]


class CompletingEngine(ScriptedEngine):
    """The scripted engine plus a scripted `complete`, recording how it was asked."""

    def __init__(self, answers):
        super().__init__()
        self.answers, self.asked = list(answers), []

    def complete(self, prompt, *, max_tokens, temperature=0.0, seed=0, stop=()):
        self.asked.append({"prompt": prompt, "temperature": temperature, "seed": seed, "stop": list(stop)})
        return self.answers.pop(0)


def test_local_teacher_samples_each_proposal_with_its_own_seed_and_sanitises():
    engine = CompletingEngine([" the writer praises it.", " Text: x Label: y", " it only states facts.",
                               " THE WRITER praises it.", " it is about politics or sports."])
    teacher = LocalTeacher(engine)
    out = teacher.propose(BRIEF, 5, seed=2)
    # the fake demo, the retold worked example (politics/sports) and the duplicate are dropped
    assert out == ["Choose positive when the writer praises it.", "Choose neutral when it only states facts."]
    assert teacher.calls == 5
    assert len({a["seed"] for a in engine.asked}) == 5 and len({a["temperature"] for a in engine.asked}) > 1
    assert [a["prompt"] for a in engine.asked] == [completion_prompt(BRIEF, primer(BRIEF, i)) for i in range(5)]
    assert all(a["stop"] == ['"', "\n"] for a in engine.asked)


def test_settings_choose_the_teacher():
    local = Settings.from_env({})
    assert isinstance(build_teacher(local, CompletingEngine([])), LocalTeacher)
    assert build_teacher(local, ScriptedEngine()) is None  # cannot generate, no teacher server
    remote = Settings.from_env({"TEACHER_BASE_URL": "http://127.0.0.1:9/v1", "TEACHER_MODEL": "big"})
    teacher = build_teacher(remote, CompletingEngine([]))  # no request is made here
    assert isinstance(teacher, OpenAITeacher) and teacher.model == "big"

"""The measuring commands: eval, bench, injection, span-bench, head-bench, load-bench, candidates,
suspects-bench and interactive-bench (docs/operations.md, "Evaluating and measuring")."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .common import (ALREADY_JSON, Failure, InputError, beside, budget_bar, dataset as read_dataset, json_option,
                     labeling_service, load_settings, print_json, progress_bar, read_data)


DATASET = click.Path(exists=True, dir_okay=False)


def int_list(value: str, option: str) -> list[int]:
    """A comma-separated list of whole numbers given to `option`."""
    try:
        return [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"comma-separated whole numbers, got {value!r}", param_hint=option) from None


@click.command(name="eval")
@click.option("--dataset", required=True, type=DATASET, help="JSONL with text/label (the test split).")
@click.option("--limit", type=int, default=None, help="Evaluate the first N items only.")
@click.option("--json-out", type=click.Path(), default=None, help="Also write the metrics as JSON here.")
@click.option("--simulate", is_flag=True, help="Stream train.jsonl (beside --dataset) as annotations into a running service.")
@click.option("--rounds", default="25,50,100,200", help="With --simulate: ground-truth sizes at which to refine and measure.")
@click.option("--naive/--no-naive", default=True, help="Also measure the naive free-text baseline (with --simulate or --report).")
@click.option("--train-seed", type=int, default=None,
              help="With --simulate: shuffle train.jsonl with this seed before streaming it (another draw of "
                   "annotations; default: file order).")
@click.option("--report", "report_dir", type=click.Path(), default=None, help="Write report.html + metrics.json here.")
@click.option("--train-size", type=int, default=0, help="With --report: labels from train.jsonl for the refined and embedding baselines.")
@click.option("--instruction", default=None,
              help="Evaluate version 0 with this instruction, as if an annotator typed it in the editor.")
@json_option(ALREADY_JSON)
def eval_(dataset: str, limit: int | None, json_out: str | None, simulate: bool, rounds: str, naive: bool,
          train_seed: int | None, report_dir: str | None, train_size: int, instruction: str | None, as_json: bool) -> None:
    """Accuracy, macro-F1 and ECE of raw vs calibrated probabilities and items/s; or, with
    --simulate, the learning curve of refinement against the naive prompt and version 0."""
    from ..evaluation.run import evaluate

    settings = load_settings()
    data = read_dataset(dataset, limit=limit)
    sizes = int_list(rounds, "--rounds") if simulate else []
    if instruction is not None and (simulate or report_dir):
        raise click.UsageError("--instruction evaluates version 0 with that instruction alone; "
                               "it does not combine with --simulate or --report")
    if train_seed is not None and not simulate:
        raise click.UsageError("--train-seed shuffles the annotations --simulate streams; it needs --simulate")
    if simulate and data.multiple:
        raise click.UsageError("--simulate streams single-label annotations; it does not take a multi-label set yet")
    if simulate:
        from ..engines.factory import load_engine
        from ..evaluation.naive import evaluate_naive, naive_predictions
        from ..evaluation.simulate import simulate as run_simulation
        from ..metrics.html_report import save_probabilities, system_metrics, write_report

        from ..evaluation.simulate import plain_calibrated
        from ..labeling.service import LabelingService

        train = read_dataset(*beside(dataset, "train.jsonl", "--simulate"), seed=train_seed)
        engine = load_engine(settings)
        naive_pred = naive_predictions(engine, data) if naive else None
        baseline = evaluate_naive(None, data, naive_pred) if naive else None
        click.echo(f"naive free-text baseline: {json.dumps(baseline)}", err=True)
        plain = plain_calibrated(LabelingService(engine, calibration=settings.calibration), data)
        click.echo(f"plain calibrated prompt: {json.dumps(plain)}", err=True)
        del engine  # the simulated service loads its own
        probs: list = []
        report = run_simulation(settings, train, data, sizes, baseline,
                                log=lambda line: click.echo(line, err=True), probs_out=probs, plain=plain)
        if report_dir:
            labels, gold = list(data.labels), data.gold
            systems = ([system_metrics("naive free text", gold, labels, pred=naive_pred)] if naive else [])
            systems.append(system_metrics("version 0", gold, labels, probs=probs[0]))
            if report["rounds"]:
                last = report["rounds"][-1]
                systems.append(system_metrics(f"served after {last['labels']} labels ({last['version']})",
                                              gold, labels, probs=probs[-1]))
            path = write_report(report_dir, title=f"Simulation on {data.name}", labels=labels, systems=systems,
                                rounds=report["rounds"], meta={"command": " ".join(sys.argv), "n_test": len(gold)})
            save_probabilities(Path(report_dir) / "probabilities.npz", data, probs[0],
                               {row["labels"]: p for row, p in zip(report["rounds"], probs[1:])})
            click.echo(f"report: {path}", err=True)
    elif report_dir:
        from ..evaluation.run import report_systems
        from ..metrics.html_report import write_report

        service = labeling_service(settings)
        train = read_dataset(*beside(dataset, "train.jsonl", "--train-size")) if train_size else None
        with progress_bar(len(data.texts), f"eval {data.name}") as bar:
            systems = report_systems(service, data, train=train, n_train=train_size, naive=naive, settings=settings,
                                     progress=bar.update)
        path = write_report(report_dir, title=f"Evaluation on {data.name}", labels=list(data.labels),
                            systems=systems, meta={"command": " ".join(sys.argv), "model": service.engine.model_id})
        summary_keys = ("name", "accuracy", "micro_f1", "macro_f1", "subset_accuracy", "ece", "ece_floor", "log_loss",
                        "mean_labels_predicted", "chosen")
        report = {"report": str(path), "systems": [{k: s[k] for k in summary_keys if k in s} for s in systems]}
    else:
        service = labeling_service(settings)
        version = None
        if instruction is not None:
            from ..labeling.label_config import parse_label_config
            from ..labeling.recipe import ControlRecipe

            if not instruction.strip():
                raise click.BadParameter("must not be empty", param_hint="--instruction")
            control = parse_label_config(data.label_config()).controls[0]
            version = ControlRecipe().instructed(control, instruction).prompt
        with progress_bar(len(data.texts), f"eval {data.name}") as bar:
            report = evaluate(service, data, version, progress=bar.update)
        if instruction is not None:
            report["instructions"] = version.instructions
    text = json.dumps(report, indent=2)
    click.echo(text)
    if json_out:
        Path(json_out).write_text(text + "\n", encoding="utf-8")


@click.command()
@click.option("--dataset", required=True, type=DATASET, help="JSONL with text/label.")
@click.option("--demos", type=DATASET, default=None, help="JSONL for the few-shot demos (default: train.jsonl beside --dataset).")
@click.option("--limit", type=int, default=100, help="Number of items timed.")
@click.option("--shots", type=int, default=8)
@click.option("--reasoning", "reasoning", default=None,
              help="Instead: accuracy and cost of reasoning first, e.g. '1,5' (one greedy rationale; 5 sampled).")
@click.option("--reasoning-tokens", type=int, default=48, show_default=True, help="With --reasoning: longest rationale.")
@json_option(ALREADY_JSON)
def bench(dataset: str, demos: str | None, limit: int, shots: int, reasoning: str | None, reasoning_tokens: int,
          as_json: bool) -> None:
    """Items/s of the /predict engine vs raw llama.cpp prefill of the same prompts, and k-shot cost;
    or, with --reasoning, what reason-then-select and self-consistency gain per second they cost."""
    from ..evaluation.run import benchmark

    settings = load_settings()
    data = read_dataset(dataset, limit=limit)
    if data.multiple:
        raise click.UsageError("bench times single-label prompts; time a multi-label set with `eval` (items/s)")
    demo_data = read_dataset(*((demos, "") if demos else beside(dataset, "train.jsonl", "bench without --demos")),
                             limit=shots * 4)
    modes = []
    if reasoning:
        from ..refinement.candidates.reasoning_first import mode

        try:
            modes = [mode(int(k), reasoning_tokens) for k in reasoning.split(",") if k.strip()]
        except ValueError as err:
            raise click.BadParameter(f"a comma-separated list of sample counts: {err}", param_hint="--reasoning")
    service = labeling_service(settings)
    n = len(data.texts)
    if reasoning:
        from ..evaluation.reasoning_bench import reasoning_benchmark

        with progress_bar((2 if shots else 1) * (1 + len(modes)) * n, f"bench {data.name}") as progress:
            counted(service, progress)
            print_json(reasoning_benchmark(service, data, demo_data, shots=shots, modes=modes))
        return
    if not hasattr(service.engine, "prefill"):
        raise InputError("bench compares the engine with raw llama.cpp prefill: it needs LLM_BACKEND=llamacpp "
                         "(time a server with `eval`, which reports items/s)")
    with progress_bar(6 * n, f"bench {data.name}") as progress:  # 3 prompts, each served and prefilled
        counted(service, progress)
        print_json(benchmark(service, data, demo_data, shots=shots))


def counted(service, progress, chunk: int = 8) -> None:
    """Let `progress` count the items `service` predicts and the engine prefills: predictions go in
    chunks, back to back as before (the prefix stays cached), so each chunk is counted as it is done."""
    predict = service.predict_control

    def chunked(control, recipe, texts):
        out = []
        for start in range(0, len(texts), chunk):
            out += predict(control, recipe, texts[start:start + chunk])
            progress.update(len(texts[start:start + chunk]))
        return out

    service.predict_control = chunked
    prefill = getattr(service.engine, "prefill", None)
    if prefill is not None:
        def prefill_counted(*args, **kwargs):
            try:
                return prefill(*args, **kwargs)
            finally:
                progress.update(1)

        service.engine.prefill = prefill_counted


@click.command()
@click.option("--dataset", required=True, type=DATASET, help="JSONL with text/label (the test split).")
@click.option("--limit", type=int, default=200, show_default=True, help="First N items.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the attacker's target labels.")
@click.option("--coded/--no-coded", default=True, show_default=True, help="Also the coded rendering (A) ..., Answer:).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of a table.")
def injection(dataset: str, limit: int, seed: int, coded: bool, as_json: bool) -> None:
    """Prompt injection: flip rate per attack family (cues towards another label in the task text)."""
    from ..evaluation.injection import measure, scored_texts, table

    settings = load_settings()
    data = read_dataset(dataset, limit=limit)
    if data.multiple:
        raise click.UsageError("injection is measured on single-label sets")
    with progress_bar(scored_texts(len(data.texts), coded), f"injection {data.name}") as bar:
        report = measure(labeling_service(settings), data, seed=seed, coded=coded, max_chars=settings.max_text_chars,
                         progress=bar.update)
    click.echo(json.dumps(report, indent=2) if as_json else table(report))


@click.command(name="span-bench")
@click.option("--dataset", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Train JSONL with spans ({text, spans: [{start, end, label}]}); labels.json beside it fixes the labels.")
@click.option("--test", "test_path", required=True, type=click.Path(exists=True, dir_okay=False), help="Test JSONL.")
@click.option("--labels", "budget", type=int, default=200, show_default=True, help="Train texts the demos come from.")
@click.option("--nearest", default="0,3", show_default=True, help="Demos per text to compare (0: zero-shot).")
@click.option("--limit-test", type=int, default=100, show_default=True, help="First N test texts.")
@click.option("--seed", type=int, default=0, show_default=True, help="Shuffle of the train texts.")
@click.option("--calibrate/--no-calibrate", default=True, show_default=True,
              help="Also zero-shot with span scores calibrated on the train texts' own extraction.")
@click.option("--rewrite", is_flag=True,
              help="Also the instruction rewrite a job runs (its teacher and REFINE_REWRITE_* budget), searched on a "
                   "minibatch of the train texts; its best proposal extracts the test texts.")
@click.option("--typing-head", is_flag=True,
              help="Also zero-shot mentions re-typed by a typing head trained on the train texts, each head setting "
                   "compared (its cross-fitted exact F1 on the train texts in the row's name).")
@click.option("--json", "as_json", is_flag=True, help="Print the reports as JSON instead of a table.")
def span_bench(dataset: str, test_path: str, budget: int, nearest: str, limit_test: int, seed: int, calibrate: bool,
               rewrite: bool, typing_head: bool, as_json: bool) -> None:
    """Entity spans (<Labels>): exact/partial/unlabelled F1, score ECE and items/s, zero-shot and with demos."""
    from ..engines.factory import load_engine
    from ..evaluation.span_bench import (load_span_rows, markdown_row, place_rows, rewrite_report, run_span_bench,
                                         span_labels, typing_head_reports, typing_settings, with_calibration)
    from ..labeling.head import Embedder
    from ..refinement.span_learning import TYPING_SETTINGS

    settings = load_settings()
    demos_per_text = int_list(nearest, "--nearest")
    train = read_data(load_span_rows, dataset, limit=budget, seed=seed)
    test = read_data(load_span_rows, test_path, limit=limit_test)
    labels = span_labels(dataset, train)
    engine, embedder = load_engine(settings), Embedder()
    reports, placed = {}, {}
    for k in demos_per_text + ([0] if typing_head and 0 not in demos_per_text else []):  # the head types zero-shot's
        with progress_bar(len(test), f"spans, {k} demos") as bar:
            placed[k] = place_rows(engine, embedder, train, test, labels, nearest=k, progress=bar.update)
        if k in demos_per_text:
            reports[str(k)] = run_span_bench(engine, embedder, train, test, labels, nearest=k, placed=placed[k])
    if (calibrate and "0" in reports) or typing_head or rewrite:  # the train texts' own zero-shot pass, once
        with progress_bar(len(train), "spans of the train texts (calibration, typing head)") as bar:
            placed["train"] = place_rows(engine, embedder, [], train, labels, progress=bar.update)
    if calibrate and "0" in reports:
        fitted = run_span_bench(engine, embedder, [], train, labels, placed=placed["train"])
        reports["0+calibrated"] = with_calibration(reports["0"], fitted)
    names = {"0": "zero-shot", "0+calibrated": f"zero-shot, scores calibrated on {budget}"}
    if typing_head:
        compared = typing_head_reports(embedder, train, placed["train"], test, placed[0], labels, typing_settings())
        # what a job would ship: the setting among its own with the best cross-fitted F1 on the train texts
        job = max((c for c in compared if c[0] in TYPING_SETTINGS),
                  key=lambda c: (c[1]["exact"]["f1"], -TYPING_SETTINGS.index(c[0])))[0]
        for setting, cv, report in sorted(compared, key=lambda c: c[0] != job):
            key = f"typing:{setting.name}"
            reports[key] = {**report, "train_cross_fitted": {k: cv[k] for k in ("exact", "partial", "unlabelled")}}
            what = (f"zero-shot placement, typing head as a job chooses it on the {len(train)} train texts: "
                    f"{setting.name[len('typing-head '):]}" if setting == job
                    else f"typing head, {setting.name[len('typing-head '):]}")
            names[key] = f"{what} (train cross-fitted exact F1 {cv['exact']['f1']:.2f})"
    if rewrite:
        from ..refinement.candidates.instruction_rewrite import Rewrite, RewriteBudget
        from ..refinement.candidates.teacher import build_teacher

        teacher = build_teacher(settings, engine)
        if teacher is None:
            raise InputError("--rewrite: no teacher; set TEACHER_BASE_URL and TEACHER_MODEL for a model server")
        reports["rewrite"] = rewrite_report(engine, embedder, Rewrite(teacher, RewriteBudget.from_settings(settings)),
                                            train, placed["train"], test, labels)
        found = reports["rewrite"]["rewrite"]
        names["rewrite"] = (f"rewritten instruction (minibatch exact F1 {found['minibatch_f1_best']} vs "
                            f"{found['minibatch_f1_current']} zero-shot)")
        if "exact" not in reports["rewrite"]:
            click.echo(f"rewrite: no usable proposal ({found})", err=True)
            del reports["rewrite"]
    if as_json:
        click.echo(json.dumps(reports, indent=2))
        return
    click.echo("| demos | exact F1 | partial F1 | unlabelled F1 | exact P | exact R | score ECE | score AUROC | items/s |\n"
               "|---|---|---|---|---|---|---|---|---|")
    for k, report in reports.items():
        click.echo(markdown_row(names.get(k, f"{k} nearest of {budget}"), report))


@click.command(name="head-bench")
@click.option("--dataset", required=True, type=click.Path(exists=True, dir_okay=False), help="Train JSONL (text/label).")
@click.option("--test", "test_path", required=True, type=click.Path(exists=True, dir_okay=False), help="Test JSONL.")
@click.option("--labels", "budgets", default="25,50,100,200", show_default=True, help="Label budgets: first N train items.")
@click.option("--limit-test", type=int, default=300, show_default=True, help="First N test items.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--iterations", type=int, default=None, help="Pair iterations per item (default 20, SetFit's R).")
@click.option("--max-pairs", type=int, default=None, help="Cap on training pairs (a time cap; default none).")
@click.option("--threads", type=int, default=1, show_default=True, help="torch threads (the machine is shared).")
@click.option("--top-layers", type=click.IntRange(1, 6), default=None,
              help="Fine-tune only the top N transformer layers, as a refinement job does (default: the whole body).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Also write the rows as JSON here.")
@click.option("--setfit/--no-setfit", default=True, show_default=True,
              help="--no-setfit: the frozen head as a job ships it (cross-fitted temperature, missing mass for "
                   "unseen labels) vs its raw probabilities, with ECE and ECE floor, instead of SetFit.")
@json_option("Print the report (the rows and the run's facts) as JSON at the end instead of a table.")
def head_bench(dataset: str, test_path: str, budgets: str, limit_test: int, seed: int, iterations: int | None,
               max_pairs: int | None, threads: int, top_layers: int | None, out: str | None, setfit: bool,
               as_json: bool) -> None:
    """Frozen MiniLM + LR vs SetFit-style fine-tuned MiniLM + LR: macro-F1, accuracy and fit seconds;
    or, with --no-setfit, the frozen head raw vs as shipped: macro-F1, ECE and ECE floor."""
    import os
    import time

    import torch

    from ..evaluation.head_bench import SHIPPED_MULTI_HEADER, SHIPPED_TABLE_HEADER, TABLE_HEADER
    from ..evaluation.head_bench import head_bench as run
    from ..evaluation.head_bench import (markdown_row, shipped_head_rows, shipped_markdown_row,
                                        shipped_multi_markdown_row)
    from ..evaluation.setfit_head import PAIR_ITERATIONS
    from ..labeling.head import load_minilm

    settings = load_settings()
    torch.set_num_threads(threads)
    sizes = int_list(budgets, "--labels")
    train, test = read_dataset(dataset), read_dataset(test_path, limit=limit_test)
    if (train.multiple or test.multiple) and setfit:
        raise click.UsageError("head-bench compares SetFit on single-label sets; use --no-setfit for a multi-label set")
    iterations = PAIR_ITERATIONS if iterations is None else iterations
    shipped_row = shipped_multi_markdown_row if test.multiple else shipped_markdown_row
    if not as_json:
        click.echo(TABLE_HEADER if setfit else SHIPPED_MULTI_HEADER if test.multiple else SHIPPED_TABLE_HEADER)
    t0 = time.perf_counter()
    report = {"dataset": train.name, "n_test": len(test.texts), "torch_threads": threads, "seed": seed,
              "pair_iterations": iterations, "max_pairs": max_pairs, "top_layers": top_layers,
              "command": " ".join(sys.argv), "rows": []}

    def record(row: dict) -> None:  # after every budget: a long run stopped early keeps what it measured
        if not as_json:
            click.echo((markdown_row if setfit else shipped_row)(train.name, row))
        report["rows"].append({**row, "load_average_1min": round(os.getloadavg()[0], 2)})  # the CPU is shared
        report["seconds"] = round(time.perf_counter() - t0, 1)
        if out:
            Path(out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    if not setfit:
        report.update(pair_iterations=None, max_pairs=None)
        shipped_head_rows(load_minilm(), train, test, sizes, folds=settings.refine_folds, on_row=record)
    else:
        run(load_minilm(), train, test, sizes, seed=seed, iterations=iterations, max_pairs=max_pairs,
            top_layers=top_layers, on_row=record)
    if as_json:
        print_json(report)


@click.command(name="feature-bench")
@click.option("--dataset", "datasets", multiple=True, type=DATASET,
              help="Train JSONL (test.jsonl beside it); repeat for more sets. Default: --sets under SHARED_DIR.")
@click.option("--sets", default=",".join(("sentence_polarity", "product_reviews", "sms_spam", "subjectivity",
                                          "clinc150")), show_default=True,
              help="Without --dataset: these sets of SHARED_DIR/datasets.")
@click.option("--labels", "budgets", default="25,50,200", show_default=True, help="Label budgets: first N train items.")
@click.option("--limit-test", type=int, default=300, show_default=True, help="First N test items.")
@click.option("--train-seed", type=int, default=None,
              help="Shuffle each train set with this seed before taking the first N (default: file order).")
@click.option("--weights", default="0.5,1,2", show_default=True, help="Scales of the Gemma block in the concat.")
@click.option("--cs", default="1,10,100", show_default=True, help="Logistic regression C grid.")
@click.option("--n-ctx", type=int, default=1024, show_default=True,
              help="Gemma context; longer texts (or prompts) are cut in tokens.")
@click.option("--threads", type=int, default=1, show_default=True, help="torch and llama.cpp threads.")
@click.option("--states", default="text", show_default=True,
              help="What Gemma reads, comma-separated: text (the text alone), prompt (version 0's prompt "
                   "up to the answer, as the scoring pass reads it).")
@click.option("--check-pooling", is_flag=True, help="First compare our pooling with llama.cpp's MEAN/LAST on 5 texts.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Also write the report as JSON here.")
@json_option("Print the report as JSON at the end instead of a table.")
def feature_bench(datasets: tuple[str, ...], sets: str, budgets: str, limit_test: int, train_seed: int | None,
                  weights: str, cs: str, n_ctx: int, threads: int, states: str, check_pooling: bool,
                  out: str | None, as_json: bool) -> None:
    """MiniLM head vs Gemma hidden states vs both, settings chosen leaving each set out: macro-F1, accuracy."""
    import time

    import torch

    from ..engines.factory import prepare_model
    from ..evaluation import feature_bench as bench
    from ..evaluation.load_bench import shared_dir
    from ..labeling.head import Embedder

    def floats(value: str, option: str) -> list[float]:
        try:
            return [float(x) for x in value.split(",") if x.strip()]
        except ValueError:
            raise click.BadParameter(f"comma-separated numbers, got {value!r}", param_hint=option) from None

    settings = load_settings()
    torch.set_num_threads(threads)
    paths = list(datasets) or [str(shared_dir() / "datasets" / s.strip() / "train.jsonl") for s in sets.split(",")
                               if s.strip()]
    pairs = []
    for path in paths:
        test_path, why = beside(path, "test.jsonl", "--dataset")
        train, test = read_dataset(path, seed=train_seed), read_dataset(test_path, why, limit=limit_test)
        if train.multiple or test.multiple:
            raise click.UsageError(f"feature-bench takes single-label sets; {path} is multi-label")
        pairs.append((train, test))
    grid = bench.setting_grid(floats(weights, "--weights"), floats(cs, "--cs"))
    sources = [x.strip() for x in states.split(",") if x.strip()]
    if not sources or any(x not in bench.STATES for x in sources):
        raise click.BadParameter(f"comma-separated, each one of {', '.join(bench.STATES)}; got {states!r}",
                                 param_hint="--states")
    model_path = prepare_model(settings)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    report = {"command": " ".join(sys.argv), "model": str(model_path), "n_test": limit_test, "threads": threads,
              "budgets": int_list(budgets, "--labels"), "settings": len(grid), "states": sources,
              "train_seed": train_seed}
    if check_pooling:
        report["pooling_check_max_relative_diff"] = bench.pooling_check(model_path, list(pairs[0][1].texts[:5]), n_ctx)
        click.echo(f"pooling check: {report['pooling_check_max_relative_diff']}", err=True)
    minilm = bench.MiniLMFeatures(Embedder())
    gemma = bench.GemmaFeatures(model_path, n_ctx=n_ctx, n_threads=threads)

    def done(name: str, scored: dict) -> None:  # a long run stopped early keeps what it measured
        click.echo(f"{name}: scored {len(scored)} budgets, {time.perf_counter() - t0:.0f} s", err=True)
        report.setdefault("done", []).append(name)
        report.update(seconds=round(time.perf_counter() - t0, 1), timing={"minilm": minilm.clock.per_100(),
                                                                           "gemma": gemma.stats()})
        if out:
            Path(out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    report.update(bench.feature_bench(pairs, minilm, gemma, report["budgets"], grid, sources, on_set=done))
    report["seconds"] = round(time.perf_counter() - t0, 1)
    if out:
        Path(out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if as_json:
        print_json(report)
        return
    click.echo(bench.TABLE_HEADER)
    for row in report["rows"]:
        click.echo(bench.markdown_row(row))
    for name, t in report["timing"].items():
        click.echo(f"\n{name}: {t['wall_seconds_per_100']} s wall ({t['cpu_seconds_per_100']} s CPU) per 100 texts "
                   f"over {t['texts']} texts" + (f", {t['mean_tokens']} tokens/text, {t['truncated']} cut"
                                                  if "mean_tokens" in t else ""))


@click.command(name="load-bench")
@click.option("--dataset", type=click.Path(exists=True, dir_okay=False), default=None,
              help="JSONL whose texts /predict gets; annotations from train.jsonl beside it (default: sms_spam).")
@click.option("--duration", type=float, default=180, show_default=True, help="Seconds of load over all phases.")
@click.option("--quick", is_flag=True, help="About 20 s of load.")
@click.option("--max-requests", type=int, default=100_000, show_default=True, help="Cap per route and phase.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of tables.")
def load_bench(dataset: str | None, duration: float, quick: bool, max_requests: int, as_json: bool) -> None:
    """/health, /webhook and /predict of the real stack under wrk over loopback, alone and at once:
    requests, errors, p50/p99 latency, throughput and RSS growth, each against its target."""
    from ..evaluation import load_bench as bench

    try:
        report = bench.run(load_settings(), dataset, bench.QUICK_SECONDS if quick else duration, max_requests,
                           log=lambda line: click.echo(line, err=True))
    except bench.LoadBenchError as err:
        raise Failure(str(err)) from err
    click.echo(json.dumps(report, indent=2) if as_json else bench.format_report(report))


CANDIDATE_COLUMNS = ("accuracy", "macro_f1", "ece", "log_loss", "p_vs_current", "seconds", "rewrite_llm_calls",
                     "rewrite_minibatch_f1")


@click.command()
@click.option("--dataset", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Labelled single-label JSONL used as the project's ground truth.")
@click.option("--limit", default=120, show_default=True, help="First N items.")
@click.option("--shots", default=None, type=int, help="Largest few-shot candidate (default REFINE_MAX_SHOTS; 0: none).")
@click.option("--no-rewrite", is_flag=True, help="Leave the instruction rewrite out.")
@click.option("--test", "test_path", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Also serve every candidate's recipe on this labelled JSONL (e.g. the test split) and show "
                   "its metrics there: does the selection pick what does best on new items?")
@click.option("--test-limit", default=300, show_default=True, help="With --test: first N items.")
@json_option("Print the decision (and, with --test, the served rows) as JSON instead of tables.")
def candidates(dataset: str, limit: int, shots: int | None, no_rewrite: bool, test_path: str | None,
               test_limit: int, as_json: bool) -> None:
    """Dry-run one refinement on a labelled file: every candidate's cross-validated metrics against
    version 0, as a job would judge them (same budgets and folds); nothing is published."""
    import time

    import numpy as np

    from ..labeling.label_config import parse_label_config
    from ..labeling.recipe import ControlRecipe
    from ..refinement.candidates.reasoning_first import reasoning_modes
    from ..refinement.job import instruction_rewrite
    from ..refinement.selection.optimizer import optimize_control

    settings = load_settings()
    data = read_dataset(dataset, limit=limit)
    if data.multiple:
        raise click.UsageError("candidates takes single-label sets (multi-choice refinement runs in jobs and eval --report)")
    test = read_dataset(test_path, limit=test_limit) if test_path else None
    control = parse_label_config(data.label_config()).controls[0]
    service = labeling_service(settings)
    t0 = time.monotonic()
    with budget_bar(settings.refine_max_seconds, f"candidates {data.name}"):
        decision = optimize_control(
            service, control, list(data.texts), np.array(data.gold), ControlRecipe(),
            folds=settings.refine_folds, shots=settings.refine_max_shots if shots is None else shots,
            alpha=settings.refine_alpha, deadline=t0 + settings.refine_max_seconds,
            rewrite=None if no_rewrite else instruction_rewrite(settings, service.engine),
            reasoning=reasoning_modes(settings, service.engine))
    seconds = time.monotonic() - t0
    result = {"dataset": data.name, "items": len(data.texts), "judged_on": decision.n_eval, "seconds": round(seconds, 1),
              "skipped": list(decision.skipped), "candidates": decision.table, "chosen": decision.best.name,
              "accepted": decision.accepted, "p_value": decision.p_value}
    if not as_json:
        click.echo(f"{data.name}: {len(data.texts)} items, judged on {decision.n_eval}, "
                   f"{seconds:.0f} s; skipped: {', '.join(decision.skipped) or '-'}")
        click.echo("| candidate | " + " | ".join(CANDIDATE_COLUMNS) + " |")
        click.echo("|---" * (len(CANDIDATE_COLUMNS) + 1) + "|")
        for row in decision.table:
            click.echo(f"| {row['name']} | " + " | ".join(str(row.get(c, "")) for c in CANDIDATE_COLUMNS) + " |")
        click.echo(f"chosen: {decision.best.name}, accepted: {decision.accepted} (p = {decision.p_value:.4f})")
    if test is not None:
        from ..evaluation.holdout import serve_candidates

        rows = serve_candidates(service, control, decision, test)  # a DatasetError is one line (exit 2)
        result["served"] = {"dataset": test.name, "items": len(test.texts), "file": Path(test_path).name, "rows": rows}
        if not as_json:
            click.echo(f"served on {test.name} ({len(test.texts)} items, {Path(test_path).name}):")
            click.echo("| candidate | cross-validated macro-F1 | log-loss | test accuracy | test macro-F1 | test ECE "
                       "| ECE floor |")
            click.echo("|---|---|---|---|---|---|---|")
            for row in rows:
                click.echo("| {name} | {cv_macro_f1} | {cv_log_loss} | {accuracy} | {macro_f1} | {ece} | {ece_floor} |"
                           .format(**row))
    if as_json:
        print_json(result)


@click.command(name="suspects-bench")
@click.option("--dataset", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Labelled single-label JSONL: the project's ground truth, some of it flipped.")
@click.option("--test", "test_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Labelled JSONL the learnt versions are served on.")
@click.option("--limit", default=200, show_default=True, help="First N items of --dataset.")
@click.option("--test-limit", default=300, show_default=True, help="First N items of --test.")
@click.option("--flip", default="0.05,0.10", show_default=True, help="Shares of the labels to flip, comma-separated.")
@click.option("--seed", default=0, show_default=True)
@click.option("--robust-head", is_flag=True,
              help="Instead: embeddings only, the plain, balanced and robust heads fitted on the flipped labels "
                   "(also with none flipped), scored on --test, for each of --seeds.")
@click.option("--seeds", default="0,1,2", show_default=True, help="With --robust-head: the flip seeds.")
@json_option("Print the clean run and one row per share as JSON instead of a table.")
def suspects_bench(dataset: str, test_path: str, limit: int, test_limit: int, flip: str, seed: int,
                   robust_head: bool, seeds: str, as_json: bool) -> None:
    """Flip a share of a labelled set's labels at random and measure the refinement job's
    label-error ranking against the flips (precision and recall at the number flipped), and the
    test macro-F1 learnt from the noisy labels and after a reviewer fixed the top suspects; or,
    with --robust-head, what down-weighting the head's suspects is worth."""
    from dataclasses import asdict

    from ..evaluation.label_error_bench import LabelErrorBench

    try:
        shares = [float(s) for s in flip.split(",")]
    except ValueError:
        raise click.BadParameter(f"comma-separated numbers, got {flip!r}", param_hint="--flip") from None
    if not all(0 < s < 1 for s in shares):
        raise click.BadParameter("each share must be between 0 and 1", param_hint="--flip")
    settings = load_settings()
    train, test = read_dataset(dataset, limit=limit), read_dataset(test_path, limit=test_limit)
    if train.multiple:
        raise click.UsageError("suspects-bench takes single-label sets")
    if robust_head:
        _robust_head_bench(train, test, [0.0, *shares], int_list(seeds, "--seeds"), settings.refine_folds, as_json)
        return
    runner = LabelErrorBench(labeling_service(settings), settings, train, test)
    clean, chosen = runner.clean()
    result = {"dataset": train.name, "labels": len(train.texts), "test_items": len(test.texts),
              "clean": {"macro_f1": clean, "chosen": chosen}, "rows": []}
    if not as_json:
        click.echo(f"{train.name}: {len(train.texts)} labels, served on {len(test.texts)} test items; "
                   f"learnt from clean labels: macro-F1 {clean:.3f} ({chosen})")
        click.echo("| flipped | k | flagged | precision@k | recall@k | precision (flagged) | recall (flagged) "
                   "| macro-F1 noisy | after review of top k | ranked from | chosen noisy / reviewed | s |")
        click.echo("|---" * 12 + "|")
    for share in shares:
        r = runner.run(share, seed)
        result["rows"].append(asdict(r))
        if not as_json:
            click.echo(f"| {r.share:.0%} | {r.flipped} | {r.flagged} | {r.precision_at_k:.3f} | {r.recall_at_k:.3f} "
                       f"| {r.precision_flagged:.3f} | {r.recall_flagged:.3f} | {r.macro_f1_noisy:.3f} "
                       f"| {r.macro_f1_reviewed:.3f} | {r.ranked_from} | {r.chosen_noisy} / {r.chosen_reviewed} "
                       f"| {r.seconds:.0f} |")
    if as_json:
        print_json(result)


def _robust_head_bench(train, test, shares: list[float], seeds: list[int], folds: int, as_json: bool) -> None:
    from dataclasses import asdict

    import numpy as np

    from ..evaluation.holdout import gold_indices
    from ..evaluation.label_error_bench import robust_head_rows
    from ..labeling.head import Embedder
    from ..labeling.label_config import parse_label_config

    control = parse_label_config(train.label_config()).controls[0]
    embedder = Embedder()
    runs = robust_head_rows(embedder.encode(list(train.texts)), np.array(train.gold), embedder.encode(list(test.texts)),
                            gold_indices(control, test), len(control.labels), shares, seeds, folds)
    if as_json:
        print_json({"dataset": train.name, "labels": len(train.texts), "test_items": len(test.texts), "folds": folds,
                    "rows": [asdict(r) for r in runs]})
        return
    click.echo(f"{train.name}: {len(train.texts)} labels, {len(test.texts)} test items, {folds} folds")
    click.echo("| flipped | seed | down-weighted | flipped among them | flips down-weighted | test macro-F1 head "
               "| head-balanced | head-robust | as many down-weighted at random | CV macro-F1 head / head-robust |")
    click.echo("|---" * 10 + "|")
    for r in runs:
        click.echo(f"| {r.share:.0%} | {r.seed} | {r.down_weighted} | {r.flipped_among_down_weighted:.2f} "
                   f"| {r.flips_down_weighted:.2f} | {r.head:.3f} | {r.head_balanced:.3f} | {r.head_robust:.3f} "
                   f"| {r.head_random:.3f} | {r.cv_head:.3f} / {r.cv_head_robust:.3f} |")


@click.command(name="template-bench")
@click.option("--dataset", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Single-label JSONL whose texts, without their labels, are the unlabelled sample.")
@click.option("--test", "test_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Labelled JSONL each template is scored on.")
@click.option("--sizes", default="32,128", show_default=True, help="Unlabelled sample sizes to choose on.")
@click.option("--test-limit", default=300, show_default=True, help="First N items of --test.")
@click.option("--seed", default=0, show_default=True, help="Seed of the unlabelled sample.")
@json_option("Print the result as JSON instead of a table.")
def template_bench(dataset: str, test_path: str, sizes: str, test_limit: int, seed: int, as_json: bool) -> None:
    """Version 0's templates on a test split, and the one the zero-label criterion (mutual
    information on unlabelled texts) would choose on samples of each size."""
    from ..evaluation.template_bench import template_bench as run

    counts = int_list(sizes, "--sizes")
    settings = load_settings()
    train, test = read_dataset(dataset), read_dataset(test_path, limit=test_limit)
    if train.multiple or test.multiple:
        raise click.UsageError("template-bench takes single-label sets")
    result = run(labeling_service(settings), train, test, counts, seed=seed, alpha=settings.refine_alpha,
                 progress=lambda name: click.echo(f"{test.name}: template {name} scored", err=True))
    if as_json:
        print_json(result)
        return
    click.echo(f"{result['dataset']} ({result['labels']} labels, {result['test_items']} test items)")
    click.echo("| template | macro-F1 | ECE | " + " | ".join(f"batch on {n}: F1 (ECE)" for n in counts) + " | "
               + " | ".join(f"MI on {n}" for n in counts) + " |")
    click.echo("|---" * (3 + 2 * len(counts)) + "|")
    for name, row in result["templates"].items():
        batch = " | ".join(f"{row['batch'][n]['macro_f1']:.3f} ({row['batch'][n]['ece']:.3f})" for n in counts)
        mi = " | ".join(f"{row['mutual_information'][n]:.4f}" for n in counts)
        click.echo(f"| {name} | {row['macro_f1']:.3f} | {row['ece']:.3f} | {batch} | {mi} |")
    for n in sorted(counts):
        click.echo(f"on {n} unlabelled texts: highest {result['highest'][n]} (beats the one served in "
                   f"{result['confidence'][n]:.0%} of resamples), served {result['chosen'][n]}: macro-F1 "
                   f"{result['default_macro_f1']:.3f} → {result['chosen_macro_f1'][n]:.3f}, "
                   f"as served with batch calibration {result['chosen_batch_macro_f1'][n]:.3f}")


@click.command(name="interactive-bench")
@click.option("--dataset", type=DATASET, default=None,
              help="Single-label JSONL whose texts and gold labels are the tasks (default: sentence_polarity test).")
@click.option("--tasks", type=click.IntRange(min=1), default=50, show_default=True,
              help="First N tasks, one request each, per mode.")
@click.option("--control", default="sentiment", show_default=True,
              help="Name of the data set's <Choices> control: the model reads it as the topic of the evidence line "
                   "(\"Annotated <control>: <label>\") and of the prompt.")
@click.option("--instruction", "instructions", multiple=True,
              help="An instruction typed in the editor's instruction <TextArea> (repeatable): its latency, and "
                   "its accuracy and macro-F1 against the batch form on the same tasks.")
@json_option("Print the report as JSON instead of tables.")
def interactive_bench(dataset: str | None, tasks: int, control: str, instructions: tuple[str, ...],
                      as_json: bool) -> None:
    """Latency of Label Studio's interactive /predict on the real stack, one task per request: the
    batch form, a choice set in the editor as evidence for the other control, and typed
    instructions (with their accuracy against the batch form)."""
    import re

    from ..evaluation import interactive_bench as bench
    from ..evaluation.load_bench import shared_dir
    from ..labelstudio.payloads import MAX_INSTRUCTION_CHARS

    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", control) or control.lower() in bench.RESERVED_NAMES:
        raise click.BadParameter(f"a control name (letters, digits, _ or -) other than "
                                 f"{', '.join(bench.RESERVED_NAMES)}, got {control!r}", param_hint="--control")
    for text in instructions:
        if not text.strip():
            raise click.BadParameter("must not be empty", param_hint="--instruction")
        if len(text) > MAX_INSTRUCTION_CHARS:
            raise click.BadParameter(f"{len(text)} characters; at most {MAX_INSTRUCTION_CHARS}",
                                     param_hint="--instruction")
    settings = load_settings()
    data = read_dataset(dataset or shared_dir().joinpath(*bench.DEFAULT_DATASET), limit=tasks)
    if data.multiple:
        raise click.UsageError("interactive-bench takes a single-label set (its control is single-choice)")
    modes = len(bench.mode_plan(list(instructions), control))
    try:
        with progress_bar(modes * len(data.texts), f"interactive {data.name}") as bar:
            report = bench.run(settings, data, tasks, [t.strip() for t in instructions], control,
                               log=lambda line: click.echo(line, err=True), progress=bar.update)
    except bench.InteractiveBenchError as err:
        raise Failure(str(err)) from err
    report["command"] = " ".join(sys.argv)
    if as_json:
        print_json(report)
    else:
        click.echo(bench.format_report(report))


COMMANDS = (eval_, bench, injection, span_bench, head_bench, feature_bench, load_bench, candidates, suspects_bench,
            template_bench, interactive_bench)

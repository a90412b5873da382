"""Quality measures shared by refinement and the benchmarks: accuracy, macro/micro-F1, ECE and
its noise floor, log-loss, and the HTML report of a version or an evaluation."""

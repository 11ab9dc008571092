"""shiftlens's benchmark: speed and memory targets measured in one run, on one device, as ratios.

Run it from the repository root: `python -m benchmarks --quick` (a few minutes) or `python -m benchmarks` (the full
mode, with the paper's stride-1 SVM size); `shiftlens bench` runs the same command. It writes `benchmarks/results.json`.

It measures shiftlens through its public API (`api.run_patch`, `api.run`, `store.ResultsDir`,
`stream.FeatureExtractor`), one concern per module:

    common.py        settings (full and quick modes), timing, the patches, one pipeline unit (run_patch + save_part)
    speed.py         forward and pipeline speed, interleaved round by round; matmul peak; FLOPs
    precision.py     how far faster precisions and compiling move maps and tables; what `--precision auto` should be
    png_baseline.py  the paper-style baseline (PNGs on disk, a DataLoader, CSV features)
    svm_speed.py     the batched SVM against scikit-learn's SVC on the same features
    memory.py        peak memory of whole runs, each in a fresh process (`python -m benchmarks.memory`)
    targets.py       THE targets table: what the JSON's `targets` and the report's table both come from
    run.py           one run of every section; report.py: the printed report and the JSON file
"""

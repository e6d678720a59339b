"""recs: a nightly batch recommendation pipeline. Each stage is a module with a pure core and a `run`."""

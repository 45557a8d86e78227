# The two commands of README.md. Each installs what it needs first (scripts/setup.sh).
.PHONY: setup test bench dev chaos fuzz

setup:
	@scripts/setup.sh

test: setup
	@scripts/test.sh

bench: setup
	cargo bench -p lms-bridge-shared --bench shared

dev: setup
	@scripts/dev.sh

# The chaos run at launch-day scale (a load tool, not part of `make test`, which runs 500).
N ?= 10000
chaos: setup
	@scripts/chaos.sh $(N)

# Every fuzz target for FUZZ_SECONDS (default 60) each: fuzz/README.md.
fuzz:
	@scripts/fuzz.sh

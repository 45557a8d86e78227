# The two commands of README.md. Each installs what it needs first (scripts/setup.sh).
.PHONY: setup test bench dev fuzz

setup:
	@scripts/setup.sh

test: setup
	@scripts/test.sh

bench: setup
	cargo bench -p lms-bridge-shared --bench shared

dev: setup
	@scripts/dev.sh

# Every fuzz target for FUZZ_SECONDS (default 60) each: fuzz/README.md.
fuzz:
	@scripts/fuzz.sh

# The two commands of README.md. Each installs what it needs first (scripts/setup.sh).
.PHONY: setup test bench dev

setup:
	@scripts/setup.sh

test: setup
	@scripts/test.sh

bench: setup
	cargo bench -p lms-bridge-shared --bench shared

dev: setup
	@scripts/dev.sh

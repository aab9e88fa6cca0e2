# The two commands of the README. Each first makes sure the C libraries of the
# fast build are installed (scripts/with-deps installs them, or falls back to
# the pure-Go build with a warning), then runs.
#
#   make run               the main job on the embedded CIFAR-10 sample
#   make run ARGS='--data cifar10 --name full'
#   make test              go vet and the tests of both builds
#   make build             ./stl, the command-line binary

ARGS ?=

.PHONY: run test build
run:
	@scripts/with-deps go run ./cmd/stl run $(ARGS)

test:
	@scripts/with-deps scripts/test

build:
	@scripts/with-deps go build -o stl ./cmd/stl

#!/bin/sh
# Generates the seed corpora in fuzz/corpus/<target>/ with the library's own writers
# (examples/fuzz_seeds.rs in this crate): real ELF cores (physical and paging), kdump files
# in every compression (plain and flattened, and in 16 and 64 KiB blocks), HMP text, notes,
# VMCOREINFO, layouts, stored pages and page tables. Nothing is checked in: run this before fuzzing.
set -eu
cd "$(dirname "$0")"
cargo run --quiet --example fuzz_seeds -- corpus

/work/main/bench/loadgen/target/release/deps/hubauth_loadgen-af1bc30c7c5fc81d.d: src/main.rs

/work/main/bench/loadgen/target/release/deps/hubauth_loadgen-af1bc30c7c5fc81d: src/main.rs

src/main.rs:

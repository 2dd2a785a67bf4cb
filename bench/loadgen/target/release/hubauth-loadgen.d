/work/main/bench/loadgen/target/release/hubauth-loadgen: /work/main/bench/loadgen/src/main.rs

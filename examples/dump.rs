fn main() {
    let b = std::fs::read(std::env::args().nth(1).unwrap()).unwrap();
    let g = wick::weights::Gguf::parse(&b).unwrap();
    for (k, v) in &g.metadata {
        let s = format!("{v:?}");
        println!("{k} = {}", &s[..s.len().min(300)]);
    }
    for (k, t) in g.tensors.iter().take(20) { println!("{k} {:?} {:?}", t.dtype, t.dims); }
    let mut types = std::collections::BTreeMap::new();
    for t in g.tensors.values() { *types.entry(format!("{:?}", t.dtype)).or_insert(0) += 1; }
    println!("{types:?} n={}", g.tensors.len());
}

fn main() {
    let b = std::fs::read("models/SmolLM2-135M-Instruct.Q4_1.gguf").unwrap();
    let g = wick::weights::Gguf::parse(&b).unwrap();
    let t = wick::Tokenizer::from_gguf(&g).unwrap();
    let p = std::fs::read_to_string("tests/fixtures/chat_prompt.txt").unwrap();
    println!("{:?}", t.encode(&p).unwrap());
    println!("{:?}", t.end_of_generation());
}

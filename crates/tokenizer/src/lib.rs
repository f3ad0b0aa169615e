//! Tokenizers (SentencePiece, byte-level BPE, WordPiece) built from GGUF metadata or a
//! Hugging Face `tokenizer.json`, and chat-template rendering.

pub mod chat;

"""Transformer language models (S16): BERT with Chinese whole word masking, a GPT-2 decoder, tokenizers."""

"""Hugging Face's side of tests/hf_interop_test.cpp, run with the interpreter of
launch/python_env.sh (transformers over Debian's torch).

  hf_reference.py logits DIR TOKEN...   load DIR with ReformerModelWithLMHead.from_pretrained
                                        (exit 3 if any weight is missing, unexpected or of the
                                        wrong shape) and print the logits of every position in
                                        float64, one line of floats per position
  hf_reference.py tokenize DIR FILE     encode FILE's text with ReformerTokenizer (the
                                        SentencePiece-backed class) loaded from DIR; print the ids
  hf_reference.py make DIR SEED JSON    save a randomly initialised ReformerModelWithLMHead of
                                        ReformerConfig(**JSON) to DIR as safetensors, every
                                        parameter perturbed (layer norms and biases included)
"""
import json
import sys

import torch
import transformers
from transformers import ReformerConfig, ReformerModelWithLMHead, ReformerTokenizer


def logits(directory, tokens):
    model, info = ReformerModelWithLMHead.from_pretrained(directory, output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    if problems:
        print("loading problems: %s" % problems, file=sys.stderr)
        sys.exit(3)
    # float64: HF's fp32 LSH round combination is slightly off where a query sees only itself.
    model = model.double().eval()
    with torch.no_grad():
        out = model(torch.tensor([tokens], dtype=torch.long)).logits[0]
    for row in out.tolist():
        print(" ".join("%.17g" % v for v in row))


def tokenize(directory, path):
    tokenizer = ReformerTokenizer.from_pretrained(directory)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    ids = tokenizer.encode(text)
    # (Its decode() strips the text's ends; the model underneath gives the text back exactly.)
    if tokenizer.sp_model.decode(ids) != text:
        print("the SentencePiece model does not decode its encoding back", file=sys.stderr)
        sys.exit(4)
    print(" ".join(str(i) for i in ids))


def make(directory, seed, config_json):
    torch.manual_seed(seed)
    model = ReformerModelWithLMHead(ReformerConfig(**json.loads(config_json)))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    model.save_pretrained(directory, safe_serialization=True)


def main():
    transformers.logging.set_verbosity_error()
    command = sys.argv[1]
    if command == "logits":
        logits(sys.argv[2], [int(t) for t in sys.argv[3:]])
    elif command == "tokenize":
        tokenize(sys.argv[2], sys.argv[3])
    elif command == "make":
        make(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        sys.exit("unknown command " + command)


if __name__ == "__main__":
    main()

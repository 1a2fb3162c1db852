"""Generation: prompt/response and text data, causal-LM training glue, PEFT methods, evaluation."""

"""Steps: models prepared for training (base causal LM, teacher, RAG retriever), staged inputs and the trainers."""

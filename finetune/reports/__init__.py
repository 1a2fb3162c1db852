"""The HTML report pages shown in the dashboard, one module per pipeline family.

``common`` holds the building blocks (tables, PNG plots as data URIs, the page frame, the promotion section);
``ranking`` the reranker and curriculum pages; ``generation`` the SFT evaluation page; ``training`` the method
comparison and continued pre-training pages; ``distillation``, ``preference`` (DPO) and ``rlhf_rag`` the rest.
"""

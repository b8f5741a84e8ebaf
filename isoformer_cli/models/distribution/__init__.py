"""Getting and finding models: the registry of downloadable models (:mod:`.registry`), Hugging Face downloads
(:mod:`.hub`, the only module that touches the network), the model folder and its manifests (:mod:`.store`) and
the resolution of ``--checkpoint NAME`` (:mod:`.locate`: the one resolve -> check path of every command).
"""

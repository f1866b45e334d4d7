"""The CLIP model layer: loading, text features, prompt learner, reward model.

Submodules are imported explicitly (``from models.loading import load_clip``) so that
torch-free parts (``contract.errors``, ``contract.labels``, ``contract.names``) stay importable
by the API process, which never imports torch.
"""

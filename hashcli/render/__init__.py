"""Pictures for people, drawn with Pillow: the query contact sheet and the precision-recall
curve. Nothing here reads a run folder or imports torch or FAISS."""

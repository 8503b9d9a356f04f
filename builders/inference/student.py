"""The student's prompt: the one user turn every trainer, generator and evaluator sends.

Images first, in order, then the text: the question and the answer profile's format
instructions (`profile.prompt_suffix`). Only the image parts differ by consumer:
training puts `{"type": "image"}` slots (the processor fills them from the row's
images), an endpoint request puts `image_ref` parts (by content hash,
builders.inference.backends.image_ref), the local generator renders slots with the
processor's chat template. The turn is built here, once, for all of them.
"""
from __future__ import annotations

IMAGE_SLOT = {"type": "image"}


def student_text(question: str, n_images: int, profile) -> str:
    """The prompt text: the question + the profile's answer format for `n_images` images."""
    return question + profile.prompt_suffix(n_images)


def student_prompt(task: dict, profile) -> str:
    """The prompt text of a task row (its question and its images)."""
    return student_text(task["question"], len(task["images"]), profile)


def user_message(text: str, image_parts: list[dict]) -> list[dict]:
    """One user message: the image parts in order, then the text."""
    return [{"role": "user", "content": [*image_parts, {"type": "text", "text": text}]}]


def build_prompt_messages(question: str, n_images: int, profile) -> list[dict]:
    """The student's user turn with image slots (what training rows and the chat template take)."""
    return user_message(student_text(question, n_images, profile), [dict(IMAGE_SLOT) for _ in range(n_images)])

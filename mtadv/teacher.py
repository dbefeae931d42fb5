"""Old import path of the EMA teacher, kept so that `from mtadv.teacher import ...` still works.

The teacher is the registered method `bregman` in mtadv/adversarial/teacher.py; its trainer callback is
mtadv.callbacks.TeacherCallback. Checkpoints do not depend on either path (they key the teacher's state by
its name, "bregman").
"""

from mtadv.adversarial.teacher import BregmanTeacher, ema_with_warmup, warmup_beta
from mtadv.callbacks import TeacherCallback

__all__ = ["BregmanTeacher", "TeacherCallback", "ema_with_warmup", "warmup_beta"]

"""Knowledge distillation (知识蒸馏): a small student learns from a large teacher's
temperature-softened distribution as well as from the data:

    L = α · T² · KL(softmax(z_t / T) ‖ softmax(z_s / T)) + (1 − α) · CE(z_s, y)

The T² keeps the soft term's gradient on the scale of the hard one (Hinton et al.)."""
import numpy as np

from .. import data, functional as F, optim
from ..nn.utils import clip_grad_norm_
from ..tensor import no_grad


def distillation_loss(student_logits, teacher_logits, targets, temperature=2.0, alpha=0.5):
    t = temperature
    log_p_student = F.log_softmax(student_logits * (1.0 / t), dim=-1)
    with no_grad():
        p_teacher = F.softmax(teacher_logits * (1.0 / t), dim=-1)
        log_p_teacher = F.log_softmax(teacher_logits * (1.0 / t), dim=-1)
    kl = (p_teacher * (log_p_teacher - log_p_student)).sum(-1).mean()
    hard = F.cross_entropy(student_logits, np.asarray(targets).reshape(-1))
    return kl * (alpha * t * t) + hard * (1 - alpha)


def distill(teacher, student, tokens, steps, block_size, batch_size=16, lr=3e-3, temperature=2.0, alpha=0.5,
            seed=0):
    """Train ``student`` on ``tokens`` against ``teacher``; returns the loss per step."""
    teacher.eval()
    opt = optim.AdamW(student.parameters(), lr=lr, weight_decay=0.0)
    schedule = optim.WarmupCosine(opt, min(20, steps), steps, lr / 10)
    rng = np.random.default_rng(seed)
    losses = []
    for _ in range(steps):
        x, y = data.batches(tokens, block_size, batch_size, rng)
        with no_grad():
            teacher_logits, _ = teacher(x)
        student_logits, _ = student(x)
        loss = distillation_loss(student_logits, teacher_logits, y, temperature, alpha)
        opt.zero_grad()
        loss.backward()
        clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        schedule.step()
        losses.append(loss.item())
    return losses

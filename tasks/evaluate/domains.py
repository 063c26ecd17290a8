"""Evaluation domains: named texts scored beside the main one, in the same reference pass.

The main text (`evaluate.corpus`, named by `evaluate.corpus_domain`, "prose" by default) keeps the
figures it always had (`perplexity`, `kld_mean`, ...). Each domain of `evaluate.domains` adds the
same figures under its name (`code/kld_mean`, `chat/top1`, ...), measured on its own chunks of
n_ctx tokens. A `chat` domain renders its conversations through the model's own chat template and
tokenizes the special tokens as a server would, so the template's tokens are scored as deployed.

The summary, `domains_kld_mean`, is the unweighted mean of each domain's mean KLD, the main text's
included: every domain counts alike, however many chunks it has.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tasks.core.errors import SourceError
from tasks.evaluate.corpus import CorpusConfig, PackageCorpus, load_conversations, load_corpus_text

DOMAIN_NAME = r"^[a-z][a-z0-9_]*$"
SUMMARY_KLD = "domains_kld_mean"
MAIN_DOMAIN = "eval_domain"  # the param naming the main text's domain (evaluate.corpus_domain) beside the others
DEFAULT_DOMAIN_CHUNKS = 8  # above the paired intervals' 5 (tasks.core.intervals.MIN_CHUNKS)


class Domain(BaseModel):
    """One named evaluation text beside the main one."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    text: CorpusConfig = Field(description="The domain's text; pin it with `sha256`.")
    render: Literal["text", "chat"] = Field(
        "text", description="text: scored as plain text; chat: conversations rendered through the model's chat "
                            "template (the text must be a package corpus with `layout: conversations`).",
    )
    max_chunks: int = Field(DEFAULT_DOMAIN_CHUNKS, ge=1, description="Chunks of n_ctx tokens scored in this domain.")


def figure_name(domain: str, figure: str) -> str:
    """`code/kld_mean`: MLflow groups a domain's figures under its name."""
    return f"{domain}/{figure}"


def domain_problems(domains: dict[str, Domain], corpus_domain: str) -> list[str]:
    problems = [f"evaluate.domains.{corpus_domain}: that name is the main text's (evaluate.corpus_domain); "
                "give the domain another name" for name in domains if name == corpus_domain]
    for name, domain in domains.items():
        if domain.render == "chat" and not (isinstance(domain.text, PackageCorpus)
                                            and domain.text.layout == "conversations"):
            problems.append(f"evaluate.domains.{name}: render: chat needs conversations (a package corpus with "
                            f"`layout: conversations`), got a {domain.text.kind} text")
    return problems


def evaluation_text_problems(main: CorpusConfig, domains: dict[str, Domain] | None) -> list[str]:
    """Every evaluation text that cannot be read or differs from its pin, found before any work (a
    second's reading: the texts are small). A hub dataset is left to the run: reading it is a download."""
    problems = []
    if main.kind != "hub":
        try:
            load_corpus_text(main)
        except SourceError as exc:
            problems.append(str(exc))
    for name, domain in (domains or {}).items():
        if domain.text.kind == "hub":
            continue
        try:
            load_domain(name, domain)
        except SourceError as exc:
            problems.append(str(exc))
    return problems


def load_domain(name: str, domain: Domain) -> dict:
    """What the tokenizer worker needs: {"render": "text", "text": ...} or {"render": "chat",
    "conversations": [[turn, ...], ...]}; every text checked against its pin."""
    where = f"evaluate.domains.{name}.text"
    if domain.render == "chat":
        assert isinstance(domain.text, PackageCorpus)  # domain_problems refused anything else
        return {"render": "chat", "conversations": load_conversations(domain.text, where=where)}
    return {"render": "text", "text": load_corpus_text(domain.text, where=where)}


def domains_measured(metrics: dict) -> list[str]:
    """The domains a variant's figures hold, in their order (`<name>/kld_mean` or, for the f16 base,
    `<name>/perplexity`)."""
    names = [key.split("/", 1)[0] for key in metrics if key.endswith(("/kld_mean", "/perplexity"))]
    return list(dict.fromkeys(names))


def domain_figures_table(metrics: dict) -> str:
    """Markdown: one row per domain, the main text first, then the summary figure."""
    names = domains_measured(metrics)
    if not names:
        return ""
    rows = ["| domain | perplexity | kld_mean | kld_p99 | top1_agreement | chunks |", "|---|---|---|---|---|---|"]

    def cell(value) -> str:
        return f"{value:.4g}" if isinstance(value, (int, float)) else "-"

    main = metrics.get(MAIN_DOMAIN) or "main text"
    for label, prefix in [(f"{main} (main text)", ""), *((name, f"{name}/") for name in names)]:
        rows.append(f"| {label} | " + " | ".join(cell(metrics.get(prefix + figure)) for figure in (
            "perplexity", "kld_mean", "kld_p99", "top1_agreement", "chunks")) + " |")
    if SUMMARY_KLD in metrics:
        rows.append(f"| **all domains** (`{SUMMARY_KLD}`: mean of the domains' kld_mean) | | "
                    f"{cell(metrics[SUMMARY_KLD])} | | | |")
    return "\n".join(rows)


def plain_text(material: dict) -> str:
    """A loaded domain's words without any template: what calibration text must not share."""
    if material["render"] == "chat":
        return "\n\n".join("\n".join(turns) for turns in material["conversations"])
    return material["text"]

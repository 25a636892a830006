"""The built-in demo app (`mieruka demo`): one task for each thing mieruka does, every parameter
with a default, so each runs with one click.

Its titles, descriptions and parameters' help are in English, Japanese, Simplified Chinese and
Russian, given as an author gives them (docs/i18n.md): texts by language, and docstring sections
named by a language. What its jobs report and print while they run stays English: a job does not
know the language of whoever reads it.
"""

from __future__ import annotations

import csv
import html
import io
import logging
import math
import os
import random
import subprocess
import time
from collections.abc import Iterator
from datetime import date
from enum import Enum
from typing import Annotated, Literal, NamedTuple

from pydantic import BaseModel, Field

import mieruka
from mieruka import charts, controls

app = mieruka.App(
    {"en": "mieruka demo", "ja": "mieruka デモ", "zh-Hans": "mieruka 演示", "ru": "Демонстрация mieruka"},
    description={
        "en": "Try every kind of task: click one, submit, watch it run.",
        "ja": "あらゆる種類のタスクを試せます。1 つ選んで送信し、実行の様子をご覧ください。",
        "zh-Hans": "试试每一种任务：点开一个，提交，看它运行。",
        "ru": "Попробуйте задачи всех видов: выберите задачу, отправьте её и наблюдайте за выполнением.",
    },
)
log = logging.getLogger("demo")

SAMPLE = """mieruka (見える化) means "making it visible".
Point it at Python functions and it serves a REST API, a durable job queue and a web UI.
Jobs keep their logs, progress, results and artifacts, and survive a restart of the server.
"""


class Colour(str, Enum):
    RED = "red"
    GREEN = "green"
    BLUE = "blue"


class Row(NamedTuple):
    item: str
    value: float


# A nested model's fields are labelled and helped in each language by their dotted names
# (`thresholds.low`) in the task's labels= and help=; pydantic's description is the API's.
class Thresholds(BaseModel):
    low: float = Field(0.2, ge=0, le=1, description="Below this is low.")
    high: float = Field(0.8, ge=0, le=1, description="Above this is high.")


def _texts(en: str, ja: str, zh: str, ru: str) -> dict[str, str]:
    """One text in the demo's four languages."""
    return {"en": en, "ja": ja, "zh-Hans": zh, "ru": ru}


DELAY = _texts("Delay (s)", "間隔（秒）", "间隔（秒）", "Задержка (с)")
TOP_WORDS = _texts("Top words", "上位の単語数", "前几个词", "Топ слов")


@app.task(
    quick=True,
    title=_texts("Hello", "あいさつ", "打招呼", "Приветствие"),
    labels={"name": _texts("Name", "名前", "名字", "Имя"), "times": _texts("Times", "回数", "次数", "Сколько раз")},
)
def hello(name: str = "world", times: Annotated[int, Field(ge=1, le=10)] = 3) -> str:
    """Say hello: a quick task that answers at once.

    Args:
        name: Who to greet.
        times: How many greetings, 1 to 10.

    ja:
        あいさつします。すぐに答えが返るクイックタスクです。

        Args:
            name: あいさつする相手
            times: あいさつの回数（1～10）

    zh-Hans:
        打个招呼：一个立即给出答复的快速任务。

        Args:
            name: 问候的对象
            times: 问候的次数，1 到 10

    ru:
        Здоровается: быстрая задача, которая отвечает сразу.

        Args:
            name: Кого приветствовать.
            times: Сколько раз поздороваться, от 1 до 10.
    """
    for i in range(times):
        print(f"hello, {name} ({i + 1}/{times})")
    return f"Hello, {name}!"


@app.task(
    timeout="5m",
    title={"en": "Count slowly", "ja": "ゆっくりカウント", "zh-Hans": "慢慢计数", "ru": "Медленный счёт"},
    labels={"steps": _texts("Steps", "ステップ数", "步数", "Шаги"), "delay": DELAY},
)
def count_slowly(
    steps: Annotated[int, Field(ge=1, le=1000)] = 20, delay: float = 0.3, *, job: mieruka.Job
) -> dict[str, int]:
    """Count with progress and a line of log per step.

    Args:
        steps: How many steps.
        delay: Seconds per step.

    ja:
        進捗を報告しながら数え、1 ステップごとにログを 1 行書きます。

        Args:
            steps: ステップ数
            delay: 1 ステップあたりの秒数

    zh-Hans:
        边计数边报告进度，每一步写一行日志。

        Args:
            steps: 步数
            delay: 每一步的秒数

    ru:
        Считает, показывая ход выполнения, и пишет строку журнала на каждом шаге.

        Args:
            steps: Количество шагов.
            delay: Секунд на шаг.
    """
    for i in range(1, steps + 1):
        time.sleep(delay)
        job.progress(i / steps, f"step {i} of {steps}")
        log.info("step %d done", i)
    return {"steps": steps}


@app.task(
    title={"en": "Make report", "ja": "レポート作成", "zh-Hans": "生成报告", "ru": "Создание отчёта"},
    labels={
        "title": _texts("Title", "タイトル", "标题", "Заголовок"),
        "rows": _texts("Rows", "行数", "行数", "Строки"),
        "colour": _texts("Colour", "色", "颜色", "Цвет"),
    },
)
def make_report(
    title: str = "Demo report",
    rows: Annotated[int, Field(ge=1, le=10000)] = 12,
    colour: Colour = Colour.BLUE,
    *,
    job: mieruka.Job,
) -> dict[str, object]:
    """Build an HTML report and a CSV file as downloadable artifacts.

    Args:
        title: The report's title.
        rows: Rows of random data.
        colour: Colour of the bars.

    ja:
        HTML のレポートと CSV ファイルを、ダウンロードできる成果物として作ります。

        Args:
            title: レポートのタイトル
            rows: ランダムなデータの行数
            colour: 棒の色

    zh-Hans:
        生成一份 HTML 报告和一个 CSV 文件，作为可下载的产物。

        Args:
            title: 报告的标题
            rows: 随机数据的行数
            colour: 条形的颜色

    ru:
        Создаёт отчёт HTML и файл CSV в виде артефактов для скачивания.

        Args:
            title: Заголовок отчёта.
            rows: Число строк случайных данных.
            colour: Цвет столбцов.
    """
    data = [Row(f"item {i + 1}", round(random.random() * 100, 1)) for i in range(rows)]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["item", "value"])
    writer.writerows((r.item, r.value) for r in data)
    job.artifact("data.csv", buffer.getvalue(), "text/csv")
    bars = "".join(
        f'<tr><td>{html.escape(r.item)}</td><td><div style="background:{colour.value};height:1em;'
        f'width:{r.value}%"></div></td><td>{r.value}</td></tr>'
        for r in data
    )
    page = f"<!doctype html><title>{html.escape(title)}</title><h1>{html.escape(title)}</h1><table>{bars}</table>"
    job.artifact("report.html", page, "text/html")
    job.artifact("chart.svg", _bar_chart(data, colour.value), "image/svg+xml")
    return {"rows": rows, "mean": round(sum(r.value for r in data) / rows, 2)}


def _bar_chart(rows: list[Row], colour: str) -> str:
    width, bar = 480, 18
    bars = "".join(
        f'<rect x="90" y="{i * (bar + 4)}" width="{r.value / 100 * (width - 100):.1f}" height="{bar}" fill="{colour}"/>'
        f'<text x="0" y="{i * (bar + 4) + 13}" font-size="12">{html.escape(r.item)}</text>'
        for i, r in enumerate(rows)
    )
    height = len(rows) * (bar + 4)
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">{bars}</svg>'


@app.task(
    title={"en": "Fail on purpose", "ja": "わざと失敗", "zh-Hans": "故意失败", "ru": "Намеренный сбой"},
    labels={"message": _texts("Message", "メッセージ", "消息", "Сообщение")},
)
def fail_on_purpose(message: str = "something went wrong") -> None:
    """Raise an error, to see how a failed job looks (error, traceback, log).

    Args:
        message: The error's message.

    ja:
        エラーを発生させます。失敗したジョブの見え方（エラー、トレースバック、ログ）を確かめられます。

        Args:
            message: エラーメッセージ

    zh-Hans:
        抛出一个错误，看看失败的作业是什么样子（错误、回溯、日志）。

        Args:
            message: 错误信息

    ru:
        Вызывает ошибку, чтобы показать, как выглядит задание со сбоем (ошибка, трассировка, журнал).

        Args:
            message: Текст ошибки.
    """
    print("about to fail")
    raise RuntimeError(message)


@app.task(
    retries=2,
    retry_backoff="1s",
    title={"en": "Flaky", "ja": "不安定なタスク", "zh-Hans": "时好时坏", "ru": "Ненадёжная задача"},
    labels={"success_rate": _texts("Success rate", "成功率", "成功率", "Доля успехов")},
)
def flaky(success_rate: Annotated[float, Field(ge=0, le=1)] = 0.3, *, job: mieruka.Job) -> str:
    """Fail at random; retried twice with backoff before it gives up.

    Args:
        success_rate: Chance that one attempt succeeds.

    ja:
        ランダムに失敗します。あきらめるまでに、間隔を延ばしながら 2 回再試行されます。

        Args:
            success_rate: 1 回の試行が成功する確率

    zh-Hans:
        随机失败；放弃之前会以递增的间隔重试两次。

        Args:
            success_rate: 单次尝试成功的概率

    ru:
        Случайно завершается ошибкой; прежде чем сдаться, повторяется дважды с нарастающей паузой.

        Args:
            success_rate: Вероятность успеха одной попытки.
    """
    print(f"attempt {job.attempt} of {job.max_attempts}")
    if random.random() > success_rate:
        raise ValueError("unlucky this time")
    return "lucky"


@app.task(
    timeout="1h",
    title={"en": "Long sleep", "ja": "長いスリープ", "zh-Hans": "长时间休眠", "ru": "Долгий сон"},
    labels={"seconds": _texts("Seconds", "秒数", "秒数", "Секунды")},
)
def long_sleep(seconds: Annotated[int, Field(ge=1, le=3600)] = 300, *, job: mieruka.Job) -> str:
    """Sleep in a child process: long enough to cancel it (the child process is stopped too).

    Args:
        seconds: How long to sleep.

    ja:
        子プロセスでスリープします。キャンセルを試せるだけの長さです（子プロセスも止まります）。

        Args:
            seconds: スリープする秒数

    zh-Hans:
        在子进程中休眠：时间足够长，可以试着取消它（子进程也会被停止）。

        Args:
            seconds: 休眠的秒数

    ru:
        Спит в дочернем процессе так долго, что задание можно отменить (дочерний процесс тоже остановится).

        Args:
            seconds: Длительность сна в секундах.
    """
    job.progress(0.0, f"sleeping {seconds}s in process {os.getpid()}")
    child = subprocess.Popen(["sleep", str(seconds)])
    print(f"started sleep as process {child.pid}")
    child.wait()
    return "rested"


@app.task(
    title={"en": "Word count", "ja": "単語のカウント", "zh-Hans": "单词计数", "ru": "Подсчёт слов"},
    labels={"document": _texts("Document", "文書", "文档", "Документ"), "top": TOP_WORDS},
)
def word_count(document: mieruka.File | None = None, top: int = 5) -> dict[str, object]:
    """Count the words of an uploaded text file (or of a built-in sample when none is given).

    Args:
        document: A text file.
        top: How many of the most frequent words to return.

    ja:
        アップロードしたテキストファイルの単語を数えます（ファイルがなければ組み込みのサンプル）。

        Args:
            document: テキストファイル
            top: 返す頻出単語の数

    zh-Hans:
        统计上传的文本文件中的单词（未提供文件时统计内置的示例）。

        Args:
            document: 文本文件
            top: 返回出现次数最多的单词的个数

    ru:
        Считает слова в загруженном текстовом файле (если файл не указан, во встроенном образце).

        Args:
            document: Текстовый файл.
            top: Сколько самых частых слов вернуть.
    """
    text = document.read_text(errors="replace") if document is not None else SAMPLE
    words = [w.strip(".,;:!?\"'()").lower() for w in text.split()]
    counts: dict[str, int] = {}
    for word in filter(None, words):
        counts[word] = counts.get(word, 0) + 1
    name = document.filename if document is not None else "sample"
    print(f"{name}: {len(words)} words, {len(counts)} distinct")
    best = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return {"file": name, "words": len(words), "top": [{"word": w, "count": c} for w, c in best]}


@app.task(
    title={"en": "All the types", "ja": "すべての型", "zh-Hans": "所有类型", "ru": "Все типы"},
    labels={
        "reference": _texts("Reference", "参照ゲノム", "参考基因组", "Референс"),
        "day": _texts("Day", "日付", "日期", "День"),
        "samples": _texts("Samples", "サンプル", "样本", "Образцы"),
        "thresholds": _texts("Thresholds", "しきい値", "阈值", "Пороги"),
        "thresholds.low": _texts("Low", "下限", "下限", "Нижний"),
        "thresholds.high": _texts("High", "上限", "上限", "Верхний"),
        "strict": _texts("Strict", "厳密", "严格", "Строго"),
        "ratio": _texts("Ratio", "比率", "比率", "Доля"),
    },
    help={
        "thresholds.low": _texts("Below this is low.", "これより下は低い。", "低于此值为低。", "Ниже этого — низко."),
        "thresholds.high": _texts(
            "Above this is high.", "これより上は高い。", "高于此值为高。", "Выше этого — высоко."
        ),
    },
)
def all_the_types(
    reference: Literal["hg38", "mm10"] = "hg38",
    day: date = date(2026, 1, 1),
    samples: list[str] = ["A1", "B2"],  # noqa: B006 - read only
    thresholds: Thresholds = Thresholds(),
    strict: bool = False,
    ratio: float = 0.5,
) -> dict[str, object]:
    """Show how each parameter type becomes a field and comes back validated.

    Args:
        reference: One of fixed values (Literal).
        day: A date.
        samples: A list of texts (list[str]).
        strict: Yes or no (bool).
        ratio: A number (float).

    ja:
        パラメーターの型ごとに、どんな入力欄になり、どう検証されて戻ってくるかを示します。

        Args:
            reference: 決まった値からの選択（Literal）
            day: 日付（date）
            samples: 文字列のリスト（list[str]）です。
            strict: はい／いいえ（bool）
            ratio: 数値（float）

    zh-Hans:
        展示每种参数类型如何变成表单字段，并在校验后返回。

        Args:
            reference: 从固定值中选择一个（Literal）
            day: 日期（date）
            samples: 字符串列表（list[str]）。
            strict: 是或否（bool）
            ratio: 数字（float）

    ru:
        Показывает, как параметр каждого типа становится полем формы и возвращается проверенным.

        Args:
            reference: Одно из фиксированных значений (Literal).
            day: Дата (date).
            samples: Список строк (list[str]).
            strict: Да или нет (bool).
            ratio: Число (float).
    """
    return {
        "reference": reference,
        "day": day.isoformat(),
        "samples": samples,
        "thresholds": thresholds.model_dump(),
        "strict": strict,
        "ratio": ratio,
    }


def _split_words(text: str) -> int:
    words = [w.strip(".,;:!?()\"'").lower() for w in text.split()]
    words = [w for w in words if w]
    with open("words.txt", "w") as out:
        out.write("\n".join(words) + "\n")
    print(f"{len(words)} words")
    return len(words)


def _letters(words_file: str, delay: float, fail_first_attempt: bool, *, job: mieruka.Job) -> dict[str, int]:
    counts: dict[str, int] = {}
    with open(words_file) as fh:
        text = fh.read()
    for i, letter in enumerate("aeiou"):
        time.sleep(delay / 2)
        counts[letter] = text.count(letter)
        job.progress((i + 1) / 5, f"counted {letter!r}")
    if fail_first_attempt and job.attempt == 1:
        raise RuntimeError("failing on the first attempt, as asked: press Retry to run only what failed")
    return counts


def _summary(top_file: str, letters: dict[str, int], *, job: mieruka.Job) -> dict[str, object]:
    with open(top_file) as fh:
        top = [line.split() for line in fh if line.strip()]
    rows = "".join(f"<tr><td>{html.escape(w)}</td><td>{n}</td></tr>" for n, w in top)
    job.artifact("summary.html", f"<h1>Top words</h1><table>{rows}</table><p>vowels: {letters}</p>")
    return {"top_words": [{"word": w, "count": int(n)} for n, w in top], "vowels": letters}


@app.pipeline(
    parallel=2,
    timeout="10m",
    title={
        "en": "Text pipeline",
        "ja": "テキスト処理パイプライン",
        "zh-Hans": "文本处理流水线",
        "ru": "Конвейер обработки текста",
    },
    labels={
        "text": _texts("Text", "テキスト", "文本", "Текст"),
        "top": TOP_WORDS,
        "delay": DELAY,
        "fail_first_attempt": _texts(
            "Fail first attempt", "初回はわざと失敗", "第一次尝试故意失败", "Сбой в первой попытке"
        ),
    },
)
def text_pipeline(
    text: str = SAMPLE,
    top: Annotated[int, Field(ge=1, le=100)] = 5,
    delay: Annotated[float, Field(ge=0, le=10)] = 0.5,
    fail_first_attempt: bool = False,
    *,
    pipe: mieruka.Pipeline,
) -> object:
    """A pipeline: Python and shell steps with dependencies, two at a time, each with its own log.

    Tick "fail first attempt", then press Retry on the failed job: only the step that failed runs
    again, the others are reused. The "banner" step is allowed to fail (it needs figlet).

    Args:
        text: The text to analyse.
        top: How many of the most frequent words to report.
        delay: Seconds each counting round waits, to watch the steps run.
        fail_first_attempt: Make the "letters" step fail on the job's first attempt.

    ja:
        依存関係のある Python とシェルのステップを 2 つずつ実行し、ステップごとにログを残すパイプラインです。

        「Fail First Attempt」にチェックを入れて送信し、失敗したジョブで「再試行」を押してください。
        失敗したステップだけがもう一度実行され、ほかのステップは前の結果を使います。
        「banner」ステップは失敗してもかまいません（figlet が必要です）。

        Args:
            text: 分析するテキスト
            top: 報告する頻出単語の数
            delay: 数える各回で待つ秒数（ステップの実行を見るため）
            fail_first_attempt: ジョブの最初の試行で「letters」ステップを失敗させる

    zh-Hans:
        一个流水线：带依赖关系的 Python 和 shell 步骤，每次运行两个，各有自己的日志。

        勾选“Fail First Attempt”并提交，然后在失败的作业上点“重试”。
        只有失败的步骤重新运行，其他步骤沿用之前的结果。
        “banner”步骤允许失败（它需要 figlet）。

        Args:
            text: 要分析的文本
            top: 报告出现次数最多的单词的个数
            delay: 每轮计数等待的秒数，便于观察步骤的运行
            fail_first_attempt: 让“letters”步骤在作业的第一次尝试时失败

    ru:
        Конвейер: шаги на Python и в оболочке с зависимостями, по два одновременно, у каждого свой журнал.

        Отметьте «Fail First Attempt», отправьте форму и нажмите «Повторить» у задания со сбоем.
        Заново выполнится только шаг с ошибкой, результаты остальных шагов будут использованы повторно.
        Шагу «banner» разрешено завершаться ошибкой (ему нужен figlet).

        Args:
            text: Текст для анализа.
            top: Сколько самых частых слов включить в отчёт.
            delay: Сколько секунд ждёт каждый раунд подсчёта, чтобы было видно, как идут шаги.
            fail_first_attempt: Завершить шаг «letters» ошибкой при первой попытке задания.
    """
    words = pipe.step(_split_words, text, name="split")
    counts = pipe.shell(
        'for i in 1 2 3 4; do echo "::progress 0.$((i * 2)) counting"; sleep {delay}; done; '
        "sort {words} | uniq -c | sort -rn | head -n {top} > top.txt; cat top.txt",
        words=words.file("words.txt"),
        top=top,
        delay=delay,
        name="count",
    )
    letters = pipe.step(_letters, words.file("words.txt"), delay, fail_first_attempt, name="letters")
    pipe.shell(
        "figlet mieruka || (echo 'figlet is not installed: this step may fail' >&2; exit 1)",
        name="banner",
        allow_failure=True,
    )
    return pipe.step(_summary, counts.file("top.txt"), letters, name="summary")


@app.task(
    queue="compute",
    timeout="10m",
    title={"en": "Estimate pi", "ja": "円周率の推定", "zh-Hans": "估算圆周率", "ru": "Оценка числа π"},
    labels={"samples": _texts("Samples", "サンプル数", "样本数", "Число точек")},
)
def estimate_pi(samples: Annotated[int, Field(ge=1000, le=50_000_000)] = 2_000_000, *, job: mieruka.Job) -> float:
    """Estimates pi from random points, with progress. On Celery it runs on the demo's compute pool,
    which this job starts and which stops after 2 idle minutes with nobody online.

    Args:
        samples: How many random points.

    ja:
        ランダムな点から円周率を推定し、進捗を表示します。Celery ではデモの計算プールで実行されます。

        このプールはこのジョブが起動し、誰もオンラインでない間に 2 分間アイドルが続くと止まります。

        Args:
            samples: ランダムな点の数

    zh-Hans:
        用随机点估算圆周率，并显示进度。在 Celery 上，它运行在演示的计算池中。

        计算池由这个作业启动，无人在线时空闲 2 分钟后停止。

        Args:
            samples: 随机点的个数

    ru:
        Оценивает число π по случайным точкам, показывая ход выполнения.
        На Celery выполняется в вычислительном пуле демонстрации.
        Пул запускается этим заданием и останавливается после 2 минут простоя, если никого нет в сети.

        Args:
            samples: Количество случайных точек.
    """
    rng = random.Random()
    inside, chunk = 0, max(1, samples // 10)
    for done in range(0, samples, chunk):
        n = min(chunk, samples - done)
        inside += sum(1 for _ in range(n) if rng.random() ** 2 + rng.random() ** 2 <= 1.0)
        job.progress((done + n) / samples, f"{done + n:,} of {samples:,} points")
    print(f"{inside:,} of {samples:,} points fell inside the circle")
    return 4 * inside / samples


# On Celery (MIERUKA_EXECUTOR=celery, a broker and a database) the demo brings its own workers:
# `mieruka worker` processes on this machine, started by the first job for their queue.
if app.settings.executor == "celery":
    from mieruka.pools import LocalWorkers

    app.pool("default", LocalWorkers(concurrency=2))
    app.pool("compute", LocalWorkers(concurrency=1), idle_stop="2m")


@app.task(
    every="1m",
    keep_count=100,
    title={"en": "Heartbeat", "ja": "ハートビート", "zh-Hans": "心跳", "ru": "Пульс"},
)
def heartbeat() -> dict[str, float]:
    """Runs every minute on its own: the system load, as a scheduled job.

    ja:
        毎分ひとりでに実行され、システムの負荷を記録するスケジュールジョブです。

    zh-Hans:
        每分钟自动运行一次：以计划作业的形式记录系统负载。

    ru:
        Запускается само каждую минуту и записывает нагрузку системы: задание по расписанию.
    """
    load1, load5, load15 = os.getloadavg()
    return {"load1": load1, "load5": load5, "load15": load15}


# -- a live dashboard and a stream ----------------------------------------------------------------
# Sources need pandas (`pip install 'mieruka[data]'`); without it each tile says so.
REGIONS = ["North", "South", "East", "West", "Central"]


@app.source(
    every="5s",
    title={"en": "Orders by region", "ja": "地域別の注文", "zh-Hans": "各地区订单", "ru": "Заказы по регионам"},
)
def orders() -> list[dict[str, object]]:
    """A made-up order book that changes at each refresh."""
    rng = random.Random(int(time.time() // 5))
    return [{"region": r, "orders": rng.randint(20, 120), "returns": rng.randint(0, 15)} for r in REGIONS]


@app.source(
    every="1m",
    title={
        "en": "A day of sensor readings",
        "ja": "センサーの 1 日分の読み取り値",
        "zh-Hans": "一天的传感器读数",
        "ru": "Показания датчика за сутки",
    },
)
def readings() -> dict[str, object]:
    """86,400 readings (one a second for a day): downsampled on the server to what a chart can show."""
    import numpy as np

    now = time.time()
    seconds = np.arange(86_400, dtype=np.float64)
    rng = np.random.default_rng(int(now // 60))
    values = 20 + 5 * np.sin(seconds / 86_400 * 2 * np.pi) + rng.normal(0, 0.4, seconds.size)
    values[rng.integers(0, seconds.size, 3)] += 12  # three spikes that must stay visible
    return {"time": (now - 86_400 + seconds).astype("datetime64[s]"), "temperature": values}


SIGNAL = {"en": "Signal at 10 Hz", "ja": "10 Hz の信号", "zh-Hans": "10 Hz 信号", "ru": "Сигнал 10 Гц"}
MACHINE = {
    "en": "This machine's load",
    "ja": "このマシンの負荷",
    "zh-Hans": "本机负载",
    "ru": "Загрузка этого компьютера",
}


@app.stream(
    every=0.1,
    window="30s",
    title=SIGNAL,
    description={
        "en": "A sine and a noisy copy, ten points a second.",
        "ja": "正弦波と、それにノイズを加えた波形です。1 秒に 10 点ずつ届きます。",
        "zh-Hans": "一条正弦波和它的加噪副本，每秒十个点。",
        "ru": "Синусоида и её зашумлённая копия, десять точек в секунду.",
    },
)
def signal() -> dict[str, float]:
    now = time.time()
    clean = math.sin(now * 2)
    return {"sine": round(clean, 4), "noisy": round(clean + random.gauss(0, 0.15), 4)}


@app.stream(
    every=1.0,
    window="2m",
    title=MACHINE,
    description={
        "en": "CPU and memory use, once a second.",
        "ja": "CPU とメモリーの使用率です。1 秒ごとに届きます。",
        "zh-Hans": "CPU 和内存的使用率，每秒一次。",
        "ru": "Загрузка процессора и памяти, раз в секунду.",
    },
)
def machine() -> Iterator[dict[str, float]]:
    import psutil

    psutil.cpu_percent(interval=0.5)  # the first reading only starts the measurement
    while True:
        yield {"cpu %": psutil.cpu_percent(), "memory %": psutil.virtual_memory().percent}


# The author's strings may be given per language: each reader sees theirs (docs/i18n.md).
app.dashboard(
    "demo",
    [
        charts.kpi(
            orders,
            "orders",
            aggregate="sum",
            title={"en": "Orders today", "ja": "本日の注文", "zh-Hans": "今日订单", "ru": "Заказы за сегодня"},
        ),
        charts.kpi(
            orders,
            "returns",
            aggregate="sum",
            title={"en": "Returns", "ja": "返品", "zh-Hans": "退货", "ru": "Возвраты"},
        ),
        charts.bar(
            orders,
            x="region",
            y=["orders", "returns"],
            title={
                "en": "Orders and returns by region",
                "ja": "地域別の注文と返品",
                "zh-Hans": "各地区的订单和退货",
                "ru": "Заказы и возвраты по регионам",
            },
        ),
        charts.doughnut(
            orders,
            x="region",
            y="orders",
            title={"en": "Share of orders", "ja": "注文の割合", "zh-Hans": "订单占比", "ru": "Доля заказов"},
        ),
        charts.line(
            readings,
            x="time",
            y="temperature",
            title={
                "en": "Temperature, last 24 h (86,400 points)",
                "ja": "過去 24 時間の気温（86,400 点）",
                "zh-Hans": "过去 24 小时的温度（86,400 个点）",
                "ru": "Температура за последние 24 ч (86\u00a0400 точек)",
            },
            span=2,
        ),
        charts.stream(signal, title=SIGNAL, window=30),
        charts.stream(machine, title=MACHINE, window=120),
        charts.table(
            orders,
            title={"en": "Orders", "ja": "注文", "zh-Hans": "订单", "ru": "Заказы"},
            page_size=5,
            span=2,
        ),
        # A control runs its task at once and answers in place.
        controls.form(hello, title={"en": "Say hello", "ja": "あいさつ", "zh-Hans": "打招呼", "ru": "Поздороваться"}),
        controls.button(
            count_slowly,
            params={"steps": 5, "delay": 0.2},
            title={"en": "Count to five", "ja": "5 までカウント", "zh-Hans": "数到五", "ru": "Досчитать до пяти"},
        ),
    ],
    title={
        "en": "Live dashboard",
        "ja": "ライブダッシュボード",
        "zh-Hans": "实时仪表板",
        "ru": "Панель в реальном времени",
    },
    description={
        "en": "Sources refreshed on the server and streams, pushed live to every browser.",
        "ja": "サーバーで更新されるデータソースとストリームを、すべてのブラウザーにライブで届けます。",
        "zh-Hans": "在服务器上刷新的数据源和数据流，实时推送到每个浏览器。",
        "ru": "Источники данных, обновляемые на сервере, и потоки: всё приходит в каждый браузер в реальном времени.",
    },
)

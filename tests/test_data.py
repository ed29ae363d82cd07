import pandas as pd
import pytest

from tunesmith.data.classification import load_classification, read_split
from tunesmith.data.readers import read_table
from tunesmith.errors import TunesmithError
from tunesmith.recipe import DataSection


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "suffix,content",
    [
        (".csv", "text,label\nhello,a\nworld,b\n"),
        (".tsv", "text\tlabel\nhello\ta\nworld\tb\n"),
        (".jsonl", '{"text": "hello", "label": "a"}\n\n{"text": "world", "label": "b"}\n'),
        (".json", '[{"text": "hello", "label": "a"}, {"text": "world", "label": "b"}]'),
    ],
)
def test_formats_read_the_same_rows(tmp_path, suffix, content):
    frame = read_table(write(tmp_path / f"d{suffix}", content))
    assert frame.to_dict("records") == [{"text": "hello", "label": "a"}, {"text": "world", "label": "b"}]


@pytest.mark.parametrize(
    "content,texts",
    [
        # a plain TSV: a text that opens with a quote would swallow the rows after it under spreadsheet quoting
        (
            'text\tlabel\n"Great movie\tpos\nBad one\tneg\nOk\tpos\n"Stop" he said\tneg\n',
            ['"Great movie', "Bad one", "Ok", '"Stop" he said'],
        ),
        ('text\tlabel\n"Great" movie\tpos\nBad one\tneg\n', ['"Great" movie', "Bad one"]),  # quotes kept
        # spreadsheet quoting: a quoted cell with a line break and doubled quotes reads as the spreadsheet showed it
        (
            'text\tlabel\n"a cell\nover two lines"\tpos\n"""Great"" movie"\tneg\n',
            ["a cell\nover two lines", '"Great" movie'],
        ),
    ],
)
def test_tsv_quotes_are_read_as_the_file_means_them(tmp_path, content, texts, caplog):
    frame = read_table(write(tmp_path / "d.tsv", content))
    assert frame["text"].tolist() == texts and len(frame["label"]) == len(texts)
    assert ("read as plain TSV" in caplog.text) is texts[0].startswith('"')


@pytest.mark.parametrize("sep", [";", ",", "\t"])
def test_an_excel_separator_line_names_the_separator(tmp_path, sep):
    """Excel's "sep=;" first line: the file is read with that separator and the header below it."""
    body = f"sep={sep}\ntext{sep}label\ngood movie, really{sep}pos\nbad{sep}neg\n".replace(
        f"good movie, really{sep}", f'"good movie, really"{sep}' if sep == "," else f"good movie, really{sep}"
    )
    frame = read_table(write(tmp_path / "d.csv", "\ufeff" + body))  # with the byte-order mark Excel writes
    assert frame.to_dict("records") == [{"text": "good movie, really", "label": "pos"}, {"text": "bad", "label": "neg"}]


def test_parquet_and_numeric_labels_become_strings(tmp_path):
    pd.DataFrame({"text": ["x", "y"], "label": [0, 1]}).to_parquet(tmp_path / "d.parquet")
    split = read_split(str(tmp_path / "d.parquet"), "text", "label")
    assert split.labels == ["0", "1"]


def test_csv_keeps_text_that_looks_like_numbers_or_na(tmp_path):
    split = read_split(str(write(tmp_path / "d.csv", "text,label\n123,a\nNA,b\n")), "text", "label")
    assert split.texts == ["123", "NA"]


@pytest.mark.parametrize(
    "name,content,expected",
    [
        ("empty.csv", "", r"empty \(0 bytes\)"),
        ("header.csv", "text,label\n", "no data rows"),
        ("bad.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": \n', "bad.jsonl:2: malformed JSON line"),
        ("list.jsonl", '["a", "b"]\n', "expected a JSON object per line"),
        ("data.xlsx", "whatever", "not a readable .xlsx file"),
        ("old.xls", "whatever", r"unsupported extension '.xls'.*Save it from Excel as .xlsx or CSV UTF-8"),
    ],
)
def test_unreadable_files_are_explained(tmp_path, name, content, expected):
    with pytest.raises(TunesmithError, match=expected):
        read_table(write(tmp_path / name, content))


def test_xlsx_reads_the_first_sheet_as_text_and_predictions_write_texts_never_formulas(tmp_path):
    import openpyxl

    from tunesmith.data.writers import write_table

    book = openpyxl.Workbook()
    sheet = book.active
    for row in (["text", "label", "score"], ["hello", 1, 0.5], ["=1+1", "b", None], [None, "c", 2]):
        sheet.append(row)
    book.create_sheet("other").append(["not", "read"])
    book.save(tmp_path / "d.xlsx")
    frame = read_table(tmp_path / "d.xlsx")  # a formula reads as its last computed value (none: never computed)
    assert frame.to_dict("records") == [
        {"text": "hello", "label": "1", "score": "0.5"},
        {"text": "", "label": "b", "score": ""},
        {"text": "", "label": "c", "score": "2"},
    ]
    texts = ['=HYPERLINK("http://x", "y")', "bell\x07", "plain"]
    write_table(
        pd.DataFrame({"text": texts, "p": [0.5, 1.0, None], "top": [["a", "b"], [], ["c"]]}), tmp_path / "o.xlsx"
    )
    cells = list(openpyxl.load_workbook(tmp_path / "o.xlsx").active.iter_rows(min_row=2))
    assert [c[0].data_type for c in cells] == ["s", "s", "s"]  # a text, not a formula a spreadsheet would run
    assert [c[0].value for c in cells] == [texts[0], "bell", "plain"] and cells[0][2].value == '["a", "b"]'
    assert read_table(tmp_path / "o.xlsx")["text"].tolist() == [texts[0], "bell", "plain"]


def test_an_xlsx_that_unpacks_unlike_a_spreadsheet_is_refused_before_parsing(tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "bomb.xlsx", "w", compression=zipfile.ZIP_DEFLATED) as packed:
        packed.writestr("xl/worksheets/sheet1.xml", b"\0" * 50_000_000)  # ~50 kB packed, 1000x
    with pytest.raises(TunesmithError, match="unlike a spreadsheet"):
        read_table(tmp_path / "bomb.xlsx")


def test_binary_and_non_utf8_files(tmp_path):
    (tmp_path / "bin.csv").write_bytes(b"\x00\x01\x02text,label")
    with pytest.raises(TunesmithError, match="binary"):
        read_table(tmp_path / "bin.csv")
    (tmp_path / "latin.csv").write_bytes("text,label\ncaf\xe9,a\n".encode("latin-1"))
    with pytest.raises(TunesmithError, match="not UTF-8"):
        read_table(tmp_path / "latin.csv")


def test_missing_file_names_role_and_path(tmp_path):
    with pytest.raises(TunesmithError, match=r"data.train: file not found: .*nope.csv"):
        read_table(tmp_path / "nope.csv", "data.train")


def test_missing_column_lists_found_columns_and_suggests(tmp_path):
    path = write(tmp_path / "d.csv", "sentence,label\nhello,a\n")
    with pytest.raises(TunesmithError) as err:
        read_split(str(path), "text", "label")
    assert "Columns found: sentence, label" in str(err.value)
    assert "data.text_column" in str(err.value)


def test_empty_text_cells_are_located(tmp_path):
    path = write(tmp_path / "d.csv", "text,label\nhello,a\n  ,b\nok,a\n,b\n")
    with pytest.raises(TunesmithError, match=r"2 empty or non-text cell\(s\) in column 'text' at data row\(s\) 2, 4"):
        read_split(str(path), "text", "label")


def test_non_text_json_cell(tmp_path):
    path = write(tmp_path / "d.jsonl", '{"text": 5, "label": "a"}\n')
    with pytest.raises(TunesmithError, match="non-text"):
        read_split(str(path), "text", "label")


def _section(tmp_path, train, **kw):
    return DataSection(train=str(write(tmp_path / "train.csv", train)), **kw)


def test_label_in_test_not_seen_in_training(tmp_path):
    train = "text,label\n" + "".join(f"t{i},{'pos' if i % 2 else 'neg'}\n" for i in range(20))
    test = write(tmp_path / "test.csv", "text,label\nx,pos\ny,neutral\n")
    with pytest.raises(TunesmithError, match="'neutral' never appear in the training data"):
        load_classification(_section(tmp_path, train, test=str(test)), seed=0)


def test_class_with_too_few_examples(tmp_path):
    train = "text,label\n" + "".join(f"t{i},a\n" for i in range(10)) + "lonely,b\n"
    with pytest.raises(TunesmithError, match=r"'b' \(1\)"):
        load_classification(_section(tmp_path, train), seed=0)


def test_single_class_is_refused(tmp_path):
    with pytest.raises(TunesmithError, match="only one class"):
        load_classification(_section(tmp_path, "text,label\na,x\nb,x\nc,x\n"), seed=0)


def test_validation_split_is_stratified_and_seeded(tmp_path):
    train = "text,label\n" + "".join(f"t{i},{'a' if i < 80 else 'b'}\n" for i in range(100))
    first = load_classification(_section(tmp_path, train, validation_split=0.2), seed=3)
    second = load_classification(_section(tmp_path, train, validation_split=0.2), seed=3)
    assert first.validation.texts == second.validation.texts
    assert sorted(first.validation.labels).count("b") == 4 and len(first.validation) == 20
    assert not set(first.validation.texts) & set(first.train.texts)
    assert first.eval_name == "validation"


def test_duplicates_and_train_eval_overlap_warn(tmp_path):
    train = "text,label\nsame,a\nsame,a\nother,b\nmore,b\nx,a\n"
    val = write(tmp_path / "val.csv", "text,label\nsame,a\nnew,b\n")
    data = load_classification(_section(tmp_path, train, validation=str(val)), seed=0)
    assert any("1 duplicate row" in w for w in data.warnings)
    assert any("1 text(s) also appear in the training data" in w for w in data.warnings)


def test_max_train_samples_is_a_seeded_sample(tmp_path):
    train = "text,label\n" + "".join(f"t{i},{'a' if i % 2 else 'b'}\n" for i in range(100))
    data = load_classification(_section(tmp_path, train, max_train_samples=30), seed=1)
    assert len(data.train) == 30
    assert data.train.texts == load_classification(_section(tmp_path, train, max_train_samples=30), seed=1).train.texts

"""What every Crypitor dashboard shares: the `datasource` variable its panels query through,
a grid that places panels, and panel factories with our units, thresholds and legends.

Each dashboard module describes its panels with these and `Page` turns them into the
Grafana JSON model (a plain dict) through grafana-foundation-sdk's builders and encoder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.builders import stat, statetimeline, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from catalog import MetricDef

TAG = "crypitor"
DATASOURCE_VAR = "datasource"
# The datasource `crypitor dashboards export` provisions. Dashboards select it by default
# and fall back to Grafana's default Prometheus when it does not exist.
PROVISIONED_DATASOURCE_UID = "crypitor-prometheus"
PROVISIONED_DATASOURCE_NAME = "Crypitor Prometheus"
DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid=f"${{{DATASOURCE_VAR}}}")
WIDTH = 24  # Grafana's grid is 24 columns wide

# Grafana unit ids
PERCENT = "percentunit"
SECONDS = "s"
PER_SECOND = "ops"
NUMBER = "none"  # plain numbers (block heights must not read "19.2 Mil")
COUNT = "short"

GREEN, ORANGE, RED = "green", "orange", "red"

PanelBuilder = stat.Panel | timeseries.Panel | table.Panel | statetimeline.Panel
Step = tuple[float, str]


def unit(metric: MetricDef) -> str:
    """The Grafana unit of a catalog metric, from its unit hint."""
    return {"s": SECONDS, "unix": "dateTimeAsIso", "bytes": "bytes"}.get(metric.unit, COUNT)


def thresholds(base: str, *steps: Step) -> db.ThresholdsConfig:
    """Absolute thresholds: `base` below the first step, then each (value, color)."""
    return (db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE)
            .steps([dm.Threshold(None, base), *(dm.Threshold(v, c) for v, c in steps)]))


def query(expr: str, legend: str = "", *, instant: bool = False,
          table_format: bool = False) -> prom.Dataquery:
    q = prom.Dataquery().expr(expr).datasource(DATASOURCE)
    q = q.instant() if instant or table_format else q.range()
    if table_format:
        q = q.format(PromQueryFormat.TABLE)
    if legend:
        q = q.legend_format(legend)
    return q


def _with_queries(panel: PanelBuilder, queries: Sequence[prom.Dataquery]) -> None:
    for i, q in enumerate(queries):
        panel.with_target(q.ref_id(chr(ord("A") + i)))


def stat_panel(title: str, unit: str, *queries: prom.Dataquery, description: str = "",
               steps: Sequence[Step] = (), base: str = GREEN, decimals: int | None = None,
               mappings: Sequence[dm.ValueMapping] = (), graph: bool = False,
               min_max: tuple[float, float] | None = None) -> stat.Panel:
    """A big number: the last value of each query, coloured by its thresholds."""
    panel = (stat.Panel().title(title).description(description).datasource(DATASOURCE)
             .unit(unit).thresholds(thresholds(base, *steps))
             .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
             .graph_mode(cm.BigValueGraphMode.AREA if graph else cm.BigValueGraphMode.NONE)
             .color_mode(cm.BigValueColorMode.VALUE)
             .text_mode(cm.BigValueTextMode.AUTO)
             .no_value("no data"))
    if decimals is not None:
        panel = panel.decimals(decimals)
    if mappings:
        panel = panel.mappings(list(mappings))
    if min_max is not None:
        panel = panel.min(min_max[0]).max(min_max[1])
    _with_queries(panel, queries)
    return panel


def timeseries_panel(title: str, unit: str, *queries: prom.Dataquery, description: str = "",
                     steps: Sequence[Step] = (), base: str = GREEN,
                     stacked: bool = False, min_value: float | None = 0,
                     max_value: float | None = None, decimals: int | None = None,
                     stepped: bool = False) -> timeseries.Panel:
    """A graph over the dashboard's time range; thresholds, when given, are drawn as
    dashed lines."""
    panel = (timeseries.Panel().title(title).description(description).datasource(DATASOURCE)
             .unit(unit).thresholds(thresholds(base, *steps))
             .legend(cb.VizLegendOptions().display_mode(cm.LegendDisplayMode.LIST)
                     .placement(cm.LegendPlacement.BOTTOM).show_legend(True))
             .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI)
                      .sort(cm.SortOrder.DESCENDING))
             .line_width(1).fill_opacity(10 if not stacked else 40)
             .show_points(cm.VisibilityMode.NEVER)
             .span_nulls(False))
    if steps:
        panel = panel.thresholds_style(
            cb.GraphThresholdsStyleConfig().mode(cm.GraphTresholdsStyleMode.DASHED))
    if stacked:
        panel = panel.stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL))
    if stepped:
        panel = panel.line_interpolation(cm.LineInterpolation.STEP_AFTER)
    if min_value is not None:
        panel = panel.min(min_value)
    if max_value is not None:
        panel = panel.max(max_value)
    if decimals is not None:
        panel = panel.decimals(decimals)
    _with_queries(panel, queries)
    return panel


def table_panel(title: str, unit: str, *queries: prom.Dataquery, description: str = "",
                columns: Sequence[tuple[str, str, str]] = (),
                hide: Sequence[str] = ("Time",),
                overrides: Sequence[tuple[str, Sequence[dm.DynamicConfigValue]]] = (),
                ) -> table.Panel:
    """A table of instant queries merged on their labels. `columns` renames the value
    columns, in query order: (header, unit, "" or a cell display mode)."""
    panel = (table.Panel().title(title).description(description).datasource(DATASOURCE)
             .unit(unit).show_header(True).cell_height(cm.TableCellHeight.SM))
    if len(queries) > 1:
        panel = panel.with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
    renames: dict[str, str] = {}
    props: dict[str, list[dm.DynamicConfigValue]] = {}
    for i, (header, col_unit, mode) in enumerate(columns):
        # Grafana names a table query's value column "Value", or "Value #<refId>" when
        # several queries are merged
        renames[f"Value #{chr(ord('A') + i)}" if len(queries) > 1 else "Value"] = header
        props[header] = [dm.DynamicConfigValue(id_val="unit", value=col_unit)]
        if mode:
            props[header].append(dm.DynamicConfigValue(
                id_val="custom.cellOptions", value={"type": mode}))
    for name, extra in overrides:
        props.setdefault(name, []).extend(extra)
    panel = panel.with_transformation(dm.DataTransformerConfig(
        id_val="organize",
        options={"excludeByName": dict.fromkeys(hide, True), "renameByName": renames}))
    for name, values in props.items():
        panel = panel.override_by_name(name, values)
    _with_queries(panel, queries)
    return panel


def state_panel(title: str, *queries: prom.Dataquery, description: str = "",
                mappings: Sequence[dm.ValueMapping] = ()) -> statetimeline.Panel:
    """One coloured band per series: which state it was in when."""
    panel = (statetimeline.Panel().title(title).description(description)
             .datasource(DATASOURCE).unit(NUMBER).mappings(list(mappings))
             .show_value(cm.VisibilityMode.NEVER).merge_values(True).fill_opacity(80)
             .line_width(0)
             .legend(cb.VizLegendOptions().display_mode(cm.LegendDisplayMode.LIST)
                     .placement(cm.LegendPlacement.BOTTOM).show_legend(False))
             .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
             .thresholds(thresholds(GREEN)))
    _with_queries(panel, queries)
    return panel


def value_text(*pairs: tuple[str, str, str]) -> dm.ValueMap:
    """A value → (text, colour) mapping: ("0", "down", RED), ..."""
    return dm.ValueMap(options={
        value: dm.ValueMappingResult(text=text, color=color, index=i)
        for i, (value, text, color) in enumerate(pairs)})


UP_DOWN = value_text(("0", "down", RED), ("1", "up", GREEN))


def mapped(*mappings: dm.ValueMapping) -> dm.DynamicConfigValue:
    """An override property giving a field its own value mappings."""
    return dm.DynamicConfigValue(id_val="mappings", value=list(mappings))


def colored(base: str, *steps: Step) -> dm.DynamicConfigValue:
    """An override property giving a field its own absolute thresholds."""
    return dm.DynamicConfigValue(id_val="thresholds", value=thresholds(base, *steps).build())


def datasource_variable() -> db.DatasourceVariable:
    return (db.DatasourceVariable(DATASOURCE_VAR).id(DATASOURCE_VAR).label("Data source")
            .type("prometheus")
            .current(dm.VariableOption(selected=True, text=PROVISIONED_DATASOURCE_NAME,
                                       value=PROVISIONED_DATASOURCE_UID)))


def query_variable(name: str, label: str, selector: str, label_name: str) -> db.QueryVariable:
    """A multi-value variable listing the `label_name` values of the series `selector`
    picks (`label_values(selector, label_name)`); "All", the default, is the regex `.*`."""
    return (db.QueryVariable(name).id(name).label(label).datasource(DATASOURCE)
            .query(f"label_values({selector}, {label_name})")
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dm.VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC)
            .multi(True).include_all(True).all_value(".*")
            .current(dm.VariableOption(selected=True, text="All", value="$__all")))


class Page:
    """One dashboard being laid out: rows and panels placed left to right on Grafana's
    24-column grid, a new line when the next panel does not fit."""

    def __init__(self, uid: str, title: str, description: str, prometheus_url: str) -> None:
        self._x = self._y = self._line = 0
        self._next_id = 1
        self._board = (
            db.Dashboard(title).uid(uid).description(description).tags([TAG])
            .editable().timezone("browser").time("now-6h", "now").refresh("30s")
            .tooltip(dm.DashboardCursorSync.CROSSHAIR)
            .timepicker(db.TimePicker().refresh_intervals(
                ["10s", "30s", "1m", "5m", "15m", "30m", "1h"]))
            .with_variable(datasource_variable())
            .link(db.DashboardLink("Crypitor").type(dm.DashboardLinkType.DASHBOARDS)
                  .tags([TAG]).as_dropdown(True).include_vars(False).keep_time(True))
            .link(db.DashboardLink("Prometheus").type(dm.DashboardLinkType.LINK)
                  .url(prometheus_url.rstrip("/") + "/targets").icon("external link")
                  .tooltip("Prometheus scrape targets").target_blank(True)))

    def time(self, start: str) -> Page:
        self._board.time(start, "now")
        return self

    def variable(self, var: db.QueryVariable) -> Page:
        self._board.with_variable(var)
        return self

    def row(self, title: str) -> Page:
        self._newline()
        self._board.with_row(db.Row(title).id(self._id())
                             .grid_pos(dm.GridPos(h=1, w=WIDTH, x=0, y=self._y)))
        self._y += 1
        return self

    def add(self, panel: PanelBuilder, w: int, h: int) -> Page:
        if not 0 < w <= WIDTH:
            raise ValueError(f"panel width must be 1..{WIDTH} (got {w})")
        if self._x + w > WIDTH:
            self._newline()
        panel.id(self._id()).grid_pos(dm.GridPos(h=h, w=w, x=self._x, y=self._y))
        self._board.with_panel(panel)
        self._x += w
        self._line = max(self._line, h)
        return self

    def build(self) -> dict[str, Any]:
        """The dashboard's JSON model as plain, JSON-serialisable data."""
        model: dict[str, Any] = json.loads(json.dumps(self._board.build(), cls=JSONEncoder))
        return model

    def _newline(self) -> None:
        if self._x:
            self._y += self._line
        self._x = self._line = 0

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id - 1


# "No data" (nothing scraped, or no target at all) is as bad as nothing up: red, saying so.
NO_DATA_RED = dm.SpecialValueMap(options=dm.DashboardSpecialValueMapOptions(
    match=dm.SpecialValueMatch.NULL_AND_NAN,
    result=dm.ValueMappingResult(text="no data", color=RED, index=0)))


def up_count_panel(title: str, *queries: prom.Dataquery, description: str = "") -> stat.Panel:
    """How many targets are up: red at 0 and red on no data, green from 1 up."""
    return stat_panel(title, COUNT, *queries, description=description, base=RED,
                      steps=((1.0, GREEN),), mappings=[NO_DATA_RED], decimals=0)


def or_none(expr: str, label: str) -> str:
    """`expr` with series that lack `label` given `label="(none)"`, so a group of targets
    without that label shows as one named row, not as a blank one."""
    return f'label_replace({expr}, "{label}", "(none)", "{label}", "")'

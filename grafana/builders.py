"""Building blocks of the sockdiag dashboards, on Grafana's foundation SDK: one function per panel kind, the
queries and selectors, the variables, the layout, and the panels both dashboards show.

Every panel takes a title, a description that says what bad looks like, its queries and a unit; the kinds
only differ in how they draw. The SDK writes the JSON; grafana/schema-check checks it against Grafana's own
published types.
"""

from grafana_foundation_sdk.builders import bargauge, heatmap, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.builders import common as c
from grafana_foundation_sdk.builders import dashboard as d
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import heatmap as heatmap_model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat, QueryEditorMode

DATASOURCE = common.DataSourceRef(type_val="prometheus", uid="${datasource}")

# --- Selectors ---------------------------------------------------------------------------------------------
# Every query filters on the variables whose label its series carry. The exporter's own metrics (collector
# health, netlink dumps, sockdiag_netns_*) have job and instance; every socket metric and the recording rules
# over them also have netns when namespaces are collected (and no netns label otherwise, which the netns
# variable's "All" (.*) still matches).
EXPORTER = 'job=~"$job", instance=~"$instance"'
SOCKETS = EXPORTER + ', netns=~"$netns"'


def sel(base: str, *matchers: str) -> str:
    """The inside of a selector: base and more matchers, such as 'protocol="tcp"' or 'address=~"$address"'."""
    return ", ".join((base,) + matchers)


# --- Queries -----------------------------------------------------------------------------------------------

def query(expr: str, legend: str = "", *, instant: bool = False,
          fmt: PromQueryFormat = PromQueryFormat.TIME_SERIES) -> Dataquery:
    q = (Dataquery().expr(expr).legend_format(legend).editor_mode(QueryEditorMode.CODE).datasource(DATASOURCE)
         .format(fmt))
    return q.instant() if instant else q.range()


def _with_targets(panel, targets):
    """Targets get the refIds A, B, ... (the schema requires one; Grafana would name them so itself)."""
    for ref_id, target in zip("ABCDEFGHIJ", targets):
        panel.with_target(target.ref_id(ref_id))
    return panel


# --- Field config shared by every kind ---------------------------------------------------------------------

GREEN = ((None, "green"),)
WARN_AT_80_PERCENT = ((None, "green"), (0.8, "orange"), (1, "red"))
RED_FROM_1 = ((None, "green"), (1, "red"))


def _thresholds(steps) -> d.ThresholdsConfig:
    """steps: (value or None, color) pairs, the first value None (the base)."""
    return (d.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE)
            .steps([model.Threshold(value=value, color=color) for value, color in steps]))


def value_mappings(**texts) -> list:
    """One value mapping: value -> (text, color), e.g. value_mappings(**{"0": ("failed", "red")})."""
    return [model.ValueMap(options={value: model.ValueMappingResult(text=text, color=color, index=i)
                                    for i, (value, (text, color)) in enumerate(texts.items())})]


BOOL_MAPPINGS = value_mappings(**{"0": ("failed", "red"), "1": ("ok", "green")})


def _panel(builder, title, description, targets, unit, *, steps=GREEN, mappings=None):
    """What every panel has: title, description, data source, queries, unit, colours and thresholds."""
    builder = (builder.title(title).description(description).datasource(DATASOURCE).unit(unit)
               .color_scheme(d.FieldColor().mode(model.FieldColorModeId.PALETTE_CLASSIC))
               .thresholds(_thresholds(steps)).mappings(mappings or []))
    return _with_targets(builder, targets)


# --- Panel kinds -------------------------------------------------------------------------------------------

def dashed(name_regex: str) -> tuple:
    """An override: series whose name matches drawn as a dashed red line without fill (limits, thresholds)."""
    return (name_regex, [
        model.DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}),
        model.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
        model.DynamicConfigValue(id_val="custom.stacking", value={"group": "A", "mode": "none"}),
        model.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "red"})])


def timeseries_panel(title, description, targets, unit, *, stack=False, steps=GREEN, threshold_line=False,
                     overrides=(), legend_table=False) -> timeseries.Panel:
    panel = _panel(timeseries.Panel(), title, description, targets, unit, steps=steps)
    panel = (panel.draw_style(common.GraphDrawStyle.LINE).line_interpolation(common.LineInterpolation.LINEAR)
             .line_width(1).fill_opacity(20 if stack else 10).gradient_mode(common.GraphGradientMode.NONE)
             .show_points(common.VisibilityMode.NEVER).span_nulls(False)
             .axis_placement(common.AxisPlacement.AUTO).axis_soft_min(0)
             .stacking(c.StackingConfig().group("A")
                       .mode(common.StackingMode.NORMAL if stack else common.StackingMode.NONE))
             .thresholds_style(c.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.LINE_AND_AREA
                                                                   if threshold_line
                                                                   else common.GraphThresholdsStyleMode.OFF))
             .legend(c.VizLegendOptions().show_legend(True).placement(common.LegendPlacement.BOTTOM)
                     .display_mode(common.LegendDisplayMode.TABLE if legend_table else common.LegendDisplayMode.LIST)
                     .calcs(["lastNotNull", "max"] if legend_table else []))
             .tooltip(c.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.DESCENDING)))
    for regex, properties in overrides:
        panel = panel.override_by_regexp(regex, properties)
    return panel


def against_threshold(title, description, expr, legend, threshold, unit) -> timeseries.Panel:
    """A timeseries of expr with the alert's threshold (a PromQL expression over sockdiag:threshold:*) as a dashed
    red line."""
    return timeseries_panel(title, description, [query(expr, legend), query(threshold, "alert threshold")], unit,
                            overrides=[dashed("alert threshold")])


def _last_value():
    return c.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)


def stat_panel(title, description, expr, unit, *, steps=GREEN) -> stat.Panel:
    return (_panel(stat.Panel(), title, description, [query(expr)], unit, steps=steps)
            .reduce_options(_last_value()).color_mode(common.BigValueColorMode.VALUE)
            .graph_mode(common.BigValueGraphMode.AREA).justify_mode(common.BigValueJustifyMode.AUTO)
            .orientation(common.VizOrientation.AUTO).text_mode(common.BigValueTextMode.AUTO))


def bargauge_panel(title, description, expr, legend, unit, *, steps=GREEN, maximum=None) -> bargauge.Panel:
    panel = (_panel(bargauge.Panel(), title, description, [query(expr, legend, instant=True)], unit, steps=steps)
             .min(0).reduce_options(_last_value()).orientation(common.VizOrientation.HORIZONTAL)
             .display_mode(common.BarGaugeDisplayMode.GRADIENT).show_unfilled(True)
             .value_mode(common.BarGaugeValueMode.COLOR).name_placement(common.BarGaugeNamePlacement.AUTO)
             .sizing(common.BarGaugeSizing.AUTO).min_viz_height(16).max_viz_height(300))
    return panel.max(maximum) if maximum is not None else panel


def table_panel(title, description, expr, unit, *, mappings=None, hide=()) -> table.Panel:
    panel = (_panel(table.Panel(), title, description, [query(expr, instant=True, fmt=PromQueryFormat.TABLE)],
                    unit, mappings=mappings)
             .show_header(True).cell_height(common.TableCellHeight.SM).align(common.FieldTextAlignment.AUTO)
             .cell_options(common.TableColorTextCellOptions())
             .with_transformation(model.DataTransformerConfig(id_val="organize", options={
                 "excludeByName": {name: True for name in ("Time", "__name__", *hide)}})))
    return _without_table_footer(panel)


def _without_table_footer(panel: table.Panel) -> table.Panel:
    """The SDK's table model still writes options.footer, which Grafana 12.2 moved into the field config
    (footer reducers per field); @grafana/schema no longer has it, so it is left out."""
    panel.build().options.footer = None
    return panel


def state_timeline_panel(title, description, expr, legend, unit, mappings) -> statetimeline.Panel:
    return (_panel(statetimeline.Panel(), title, description, [query(expr, legend)], unit, mappings=mappings)
            .fill_opacity(70).line_width(0).show_value(common.VisibilityMode.NEVER).merge_values(True)
            .align_value("left").row_height(0.9)
            .legend(c.VizLegendOptions().show_legend(False).display_mode(common.LegendDisplayMode.LIST)
                    .placement(common.LegendPlacement.BOTTOM).calcs([]))
            .tooltip(c.VizTooltipOptions().mode(common.TooltipDisplayMode.SINGLE).sort(common.SortOrder.NONE)))


def heatmap_panel(title, description, selector, *, unit="bytes", rate=False) -> heatmap.Panel:
    """A heatmap of a gauge histogram: the current per-socket distribution over time (buckets are cumulative,
    Grafana takes the differences); with rate, of a histogram's counters: observations per second by bucket."""
    inner = f"rate({selector}[$__rate_interval])" if rate else selector
    target = query(f"sum by (le) ({inner})", "{{le}}", fmt=PromQueryFormat.HEATMAP)
    return (_panel(heatmap.Panel(), title, description, [target], "short")
            .scale_distribution(c.ScaleDistributionConfig().type(common.ScaleDistribution.LINEAR))
            .hide_from(c.HideSeriesConfig().legend(False).tooltip(False).viz(False))
            .calculate(False)
            .y_axis(heatmap.YAxisConfig().axis_placement(common.AxisPlacement.LEFT).unit(unit).reverse(False))
            .rows_frame(heatmap.RowsHeatmapOptions().layout(common.HeatmapCellLayout.LE))
            .cell_values(heatmap.CellValues().unit("short"))
            .color(heatmap.HeatmapColorOptions().mode(heatmap_model.HeatmapColorMode.SCHEME).scheme("Oranges")
                   .scale(heatmap_model.HeatmapColorScale.EXPONENTIAL).exponent(0.5).steps(64).fill("dark-orange")
                   .reverse(False))
            .filter_values(heatmap.FilterValueRange().le(1e-9)).show_value(common.VisibilityMode.NEVER)
            .cell_gap(1).mode(common.TooltipDisplayMode.SINGLE).hide_y_histogram().show_legend()
            .exemplars_color("rgba(255,0,255,0.7)"))


# --- Panels both dashboards show ---------------------------------------------------------------------------

def fullest_listeners(description: str, selector: str = SOCKETS) -> bargauge.Panel:
    """The top-10 fill-ratio bar gauge."""
    return bargauge_panel("Fullest listeners", description,
                          f"topk(10, instance_address:sockdiag_listener_accept_queue:fill_ratio{{{selector}}})",
                          "{{instance}} {{netns}} {{address}}", "percentunit", steps=WARN_AT_80_PERCENT, maximum=1)


def listener_drops(description: str, selector: str = SOCKETS) -> timeseries.Panel:
    """The 10 listening addresses dropping the most, per second."""
    return timeseries_panel("Listeners dropping", description,
                            [query(f"topk(10, rate(sockdiag_listener_drops_total{{{selector}}}[$__rate_interval]))",
                                   "{{instance}} {{netns}} {{protocol}} {{address}}")], "cps")


def half_open(description: str, selector: str = SOCKETS) -> timeseries.Panel:
    """The 10 listening addresses with the most connections in SYN_RECV."""
    return timeseries_panel("Half-open connections", description,
                            [query(f"topk(10, sockdiag_listener_half_open_connections{{{selector}}})",
                                   "{{instance}} {{netns}} {{protocol}} {{address}}")], "short")


def accept_queues_by_protocol(description: str) -> timeseries.Panel:
    """Waiting connections and their limits summed over every listener, per family and protocol."""
    return timeseries_panel(
        "Accept queues by protocol", description,
        [query(f"sum by (family, protocol) (sockdiag_accept_queue_length{{{SOCKETS}}})",
               "{{family}} {{protocol}} waiting"),
         query(f"sum by (family, protocol) (sockdiag_accept_queue_limit{{{SOCKETS}}})",
               "{{family}} {{protocol}} limit")],
        "short", overrides=[dashed(".* limit")])


def listen_overflows(title: str, description: str) -> timeseries.Panel:
    """The kernel's TcpExt ListenOverflows and ListenDrops per second (per network namespace, not listener)."""
    return timeseries_panel(title, description, [
        query(f"sum by (instance, netns) (rate(sockdiag_tcp_listen_overflows_total{{{SOCKETS}}}[$__rate_interval]))",
              "{{instance}} {{netns}} overflows"),
        query(f"sum by (instance, netns) (rate(sockdiag_tcp_listen_drops_total{{{SOCKETS}}}[$__rate_interval]))",
              "{{instance}} {{netns}} drops")], "cps")


def connections_per_listener(description: str, selector: str = SOCKETS) -> timeseries.Panel:
    """Inbound TCP connections closed per second, per listening address and outcome (the flows collector)."""
    return timeseries_panel(
        "Connections closed per listener", description,
        [query(f"sum by (address, outcome) (rate(sockdiag_listener_tcp_connections_closed_total{{{selector}}}"
               "[$__rate_interval]))", "{{address}} {{outcome}}")], "cps", legend_table=True)


def closed_bytes(title, description, metric, by, selector) -> timeseries.Panel:
    """Bytes per second sent (acknowledged) and received through TCP connections when they close (the flows
    collector): metric is the counter's name with {way} for sent or received; by the labels to keep."""
    legend = " ".join("{{%s}}" % label for label in by.split(", "))
    return timeseries_panel(title, description, [
        query(f"sum by ({by}) (rate({metric.format(way=way)}{{{selector}}}[$__rate_interval]))", f"{legend} {way}")
        for way in ("sent", "received")], "Bps")


# --- Variables ---------------------------------------------------------------------------------------------

def _without_interval_fields(variable):
    """The SDK writes the interval variable's auto, auto_count and auto_min on every variable; Grafana's
    VariableModel has none of them, so they are left out of the others."""
    built = variable.build()
    built.auto = built.auto_min = built.auto_count = None
    return variable


def datasource_variable() -> d.DatasourceVariable:
    return _without_interval_fields(d.DatasourceVariable("datasource").label("Data source").type("prometheus")
                                    .current(model.VariableOption(text="default", value="default")))


def query_variable(name: str, label: str, metric_selector: str, label_name: str, *, multi: bool,
                   all_value: str = "") -> d.QueryVariable:
    """label_values(metric_selector, label_name), refreshed with the time range. multi: several values, "All"
    included; all_value: what "All" stands for in queries (by default every value found, as a regex)."""
    expr = f"label_values({metric_selector}, {label_name})"
    variable = (d.QueryVariable(name).label(label).datasource(DATASOURCE)
                .query({"query": expr, "refId": "StandardVariableQuery"})
                .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(model.VariableSort.ALPHABETICAL_ASC)
                .multi(multi).include_all(multi))
    if multi:
        variable = variable.current(model.VariableOption(selected=True, text=["All"], value=["$__all"]))
    else:
        variable = variable.current(model.VariableOption(text="", value=""))
    return _without_interval_fields(variable.all_value(all_value) if all_value else variable)


def common_variables() -> list:
    """Data source, job, instance and network namespace: the first variables of every dashboard."""
    return [
        datasource_variable(),
        query_variable("job", "Job", "sockdiag_build_info", "job", multi=False),
        query_variable("instance", "Instance", 'sockdiag_build_info{job=~"$job"}', "instance", multi=True),
        # "All" is .*: it also matches exporters that collect only their own namespace (no netns label).
        query_variable("netns", "Network namespace", f"sockdiag_netns_info{{{EXPORTER}}}", "netns", multi=True,
                       all_value=".*"),
    ]


# --- Dashboard ---------------------------------------------------------------------------------------------

TAGS = ["sockdiag", "sockets"]


class Layout:
    """A dashboard filled row by row: panels go left to right (the SDK wraps at 24 columns) and are numbered
    in order once built."""

    def __init__(self, uid: str, title: str, description: str, variables: list):
        self.builder = (
            d.Dashboard(title).uid(uid).description(description).tags(TAGS).editable().refresh("30s")
            .time("now-6h", "now").timezone("browser").tooltip(model.DashboardCursorSync.CROSSHAIR).version(1)
            .week_start("").fiscal_year_start_month(0).timepicker(d.TimePicker())
            .annotation(d.AnnotationQuery().name("Annotations & Alerts").built_in(1).enable(True).hide(True)
                        .icon_color("rgba(0, 211, 255, 1)").type("dashboard")
                        .datasource(common.DataSourceRef(type_val="grafana", uid="-- Grafana --")))
            .link(d.DashboardLink("sockdiag dashboards").type(model.DashboardLinkType.DASHBOARDS).tags(["sockdiag"])
                  .as_dropdown(True).include_vars(True).keep_time(True).icon("external link").target_blank(False)
                  .tooltip("").url(""))
            .variables(variables))

    def row(self, title: str, repeat: str = "") -> "Layout":
        row = d.Row(title).collapsed(False)
        self.builder.with_row(row.repeat(repeat) if repeat else row)
        return self

    def add(self, panel, w: int, h: int) -> "Layout":
        self.builder.with_panel(panel.span(w).height(h))
        return self

    def build(self) -> model.Dashboard:
        dashboard = self.builder.build()
        for number, panel in enumerate(dashboard.panels, 1):
            panel.id_val = number
        return dashboard

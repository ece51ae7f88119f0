"""The functions a query may call: DuckDB functions that are pure and bounded.

A function is on the list when it reads nothing but its arguments (and, for the
date/time group, the clock) and its output is at most a small multiple of its input.
Left out on purpose: anything that reads settings, variables, the catalog, files or
the environment (``current_setting``, ``getvariable``, ``version``, ``duckdb_*``,
``pg_*``, ``read_*``, ``json_execute_serialized_sql`` ...), anything with a side
effect or no fixed answer (``nextval``, ``setseed``, ``random``, ``uuid``,
``sleep_ms``, ``write_log``), and anything whose output one call can blow up from a
small argument: ``repeat``, ``lpad``/``rpad``, ``printf``/``format`` (widths),
``range``/``generate_series``, ``list_resize``/``array_resize``, ``bitstring``,
``equi_width_bins``; DuckDB builds these outside its memory accounting (measured:
``repeat('x', 2000000000)`` took 3.9 GB with ``memory_limit = 1GB``), and no deadline
can interrupt a single call. Quadratic string distances (``levenshtein`` ...) are left
out for the same reason: one call on two long strings runs for hours.

How much the allowed functions can grow a value is bounded per query by
``daemon.query.sizes`` (``replace`` and ``regexp_replace`` need constant arguments
there, so their growth is known).
"""

from __future__ import annotations


def words(text: str) -> frozenset[str]:
    """The whitespace-separated names in ``text``."""
    return frozenset(text.split())


OPERATORS = words(
    """
    != !__postfix !~~ !~~* % & && * ** + - ->> / // < <-> << <= <=> <@ = > >= >> @ @> ^ ^@
    | || ~ ~~ ~~* ~~~ __between __cast add subtract multiply divide mod xor
    """
) | {"IS DISTINCT FROM", "IS NOT DISTINCT FROM"}

NUMERIC = words(
    """
    abs acos acosh asin asinh atan atan2 atanh bit_count cbrt ceil ceiling cos cosh cot
    degrees even exp factorial floor fmod gamma gcd greatest greatest_common_divisor
    isfinite isinf isnan lcm least least_common_multiple lgamma ln log log10 log2
    nextafter pi pow power radians round round_even roundbankers sign signbit sin sinh
    sqrt tan tanh trunc decimal_division fdiv
    """
)

TEXT = words(
    """
    ascii bit_length char_length character_length chr concat concat_ws contains
    ends_with starts_with prefix suffix instr position strpos lcase lower ucase upper
    left left_grapheme right right_grapheme len length length_grapheme strlen
    octet_length ltrim rtrim trim reverse strip_accents nfc_normalize substr substring
    substring_grapheme translate unicode ord split_part split str_split string_split
    string_split_regex string_to_array regexp_split_to_array regexp_extract
    regexp_extract_all regexp_full_match regexp_matches regexp_escape like_escape
    ilike_escape not_like_escape not_ilike_escape hamming mismatches jaccard
    replace regexp_replace md5 md5_number md5_number_lower md5_number_upper sha1 sha256
    hash base64 to_base64 from_base64 hex to_hex unhex from_hex bin to_binary
    from_binary unbin encode decode url_encode url_decode format_bytes
    formatReadableSize formatReadableDecimalSize parse_formatted_bytes bar to_base
    overlay get_bit set_bit bit_position typeof alias
    """
)

TIME = words(
    """
    age century date_diff datediff date_part datepart date_sub datesub date_trunc
    datetrunc date_add day dayname dayofmonth dayofweek dayofyear days_in_month decade
    epoch epoch_ms epoch_ns epoch_us era hour isodow isoyear julian last_day make_date
    make_time make_timestamp make_timestamp_ms make_timestamp_ns make_timestamptz
    microsecond millennium millisecond minute month monthname nanosecond quarter second
    strftime strptime try_strptime time_bucket timezone timezone_hour timezone_minute
    to_centuries to_days to_decades to_hours to_microseconds to_millennia
    to_milliseconds to_minutes to_months to_quarters to_seconds to_timestamp to_weeks
    to_years week weekday weekofyear year yearweek normalized_interval
    now today current_date current_localtime current_localtimestamp get_current_time
    get_current_timestamp transaction_timestamp
    """
)

NESTED = words(
    """
    list_value list_pack array_value list_aggregate list_aggr array_aggregate array_aggr
    aggregate list_apply array_apply apply list_transform array_transform list_filter
    array_filter filter list_reduce array_reduce reduce list_cat list_concat array_cat
    array_concat list_contains array_contains list_has array_has list_has_all
    array_has_all list_has_any array_has_any list_distinct array_distinct list_unique
    array_unique list_extract array_extract list_element element_at list_position
    array_position list_indexof array_indexof list_slice array_slice list_sort
    array_sort list_reverse_sort array_reverse_sort list_grade_up array_grade_up
    grade_up list_select array_select list_where array_where list_zip array_zip
    list_intersect array_intersect list_cosine_similarity array_cosine_similarity
    list_cosine_distance array_cosine_distance list_distance array_distance
    list_dot_product array_dot_product list_inner_product array_inner_product
    list_negative_dot_product array_negative_dot_product list_negative_inner_product
    array_negative_inner_product array_cross_product array_length cardinality flatten
    list_append array_append array_push_back list_prepend array_prepend
    array_push_front array_pop_back array_pop_front list_reverse array_reverse
    array_to_string array_to_string_comma_default
    list_any_value list_approx_count_distinct list_avg list_bit_and list_bit_or
    list_bit_xor list_bool_and list_bool_or list_count list_entropy list_first
    list_histogram list_kurtosis list_kurtosis_pop list_last list_mad list_max
    list_median list_min list_mode list_product list_sem list_skewness list_stddev_pop
    list_stddev_samp list_string_agg list_sum list_var_pop list_var_samp
    map map_concat map_contains map_contains_entry map_contains_value map_entries
    map_extract map_extract_value map_from_entries map_keys map_values
    struct_pack struct_extract struct_extract_at struct_concat struct_contains
    struct_has struct_indexof struct_insert struct_keys struct_position struct_update
    struct_values row union_extract union_tag union_value enum_code enum_first
    enum_last enum_range enum_range_boundary
    """
)

JSON = words(
    """
    json json_array json_array_length json_contains json_exists json_extract
    json_extract_path json_extract_path_text json_extract_string json_keys
    json_merge_patch json_object json_pretty json_quote json_structure json_transform
    json_transform_strict json_type json_valid json_value to_json array_to_json
    row_to_json from_json from_json_strict json_group_array json_group_object
    json_group_structure
    """
)

CONDITIONAL = words("if nullif")

WINDOWS = words(
    """
    cume_dist dense_rank rank_dense fill first_value last_value nth_value lag lead ntile
    percent_rank rank row_number
    """
)

AGGREGATES = words(
    """
    any_value arbitrary approx_count_distinct approx_quantile arg_max arg_max_null
    arg_max_nulls_last arg_min arg_min_null arg_min_nulls_last argmax argmin array_agg
    avg mean bit_and bit_or bit_xor bool_and bool_or corr count count_star count_if
    countif covar_pop covar_samp entropy favg first last fsum sum sum_no_overflow
    kahan_sum sumkahan group_concat listagg string_agg list histogram histogram_exact
    kurtosis kurtosis_pop mad max min max_by min_by median mode product quantile
    quantile_cont quantile_disc regr_avgx regr_avgy regr_count regr_intercept regr_r2
    regr_slope regr_sxx regr_sxy regr_syy sem skewness stddev stddev_pop stddev_samp
    var_pop var_samp variance geomean geometric_mean weighted_avg wavg
    """
)

PURE_FUNCTIONS = (
    OPERATORS | NUMERIC | TEXT | TIME | NESTED | JSON | CONDITIONAL | AGGREGATES | WINDOWS
)

# Collations are functions too (``x COLLATE de`` binds ``collate_de``): all pure.
COLLATION_PREFIXES = ("collate_", "icu_collate_")

# Functions left out because one call can take unbounded memory or time (tests check
# that they stay out of PURE_FUNCTIONS).
AMPLIFIERS = words(
    """
    repeat lpad rpad printf format range generate_series list_resize array_resize
    bitstring bitstring_agg equi_width_bins levenshtein damerau_levenshtein editdist3
    jaro_similarity jaro_winkler_similarity approx_top_k reservoir_quantile lttb
    sleep_ms pg_sleep
    """
)

# Functions that read state, settings or the catalog, or have side effects.
STATEFUL = words(
    """
    current_setting getvariable version current_database current_schema current_schemas
    current_catalog current_role current_user session_user user current_query
    current_query_id current_connection_id current_transaction_id txid_current
    in_search_path nextval currval setval setseed random uuid gen_random_uuid uuidv4
    uuidv7 write_log error stats json_serialize_sql json_serialize_plan
    json_deserialize_sql json_execute_serialized_sql pg_typeof has_table_privilege
    pg_get_viewdef col_description obj_description inet_client_addr
    """
)


def is_allowed(name: str) -> bool:
    """True when ``name`` (a DuckDB function or operator name) may be called."""
    return name in PURE_FUNCTIONS or name.startswith(COLLATION_PREFIXES)

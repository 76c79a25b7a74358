"""The gate stage (KFP component `gate`): the statistics (stats), the decision and the champion policy
(policy), and the report, as Markdown (report_text) and as an HTML page with plots (report)."""

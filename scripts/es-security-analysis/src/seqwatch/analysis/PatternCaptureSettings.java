package seqwatch.analysis;

import java.util.List;
import org.elasticsearch.plugin.settings.AnalysisSettings;
import org.elasticsearch.plugin.settings.BooleanSetting;
import org.elasticsearch.plugin.settings.ListSetting;

/** The settings of the `.security` index's `email` filter: `patterns` and `preserve_original`. */
@AnalysisSettings
public interface PatternCaptureSettings {
    @ListSetting(path = "patterns")
    List<String> patterns();

    @BooleanSetting(path = "preserve_original", defaultValue = true)
    boolean preserveOriginal();
}

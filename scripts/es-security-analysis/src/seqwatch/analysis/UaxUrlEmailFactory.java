package seqwatch.analysis;

import org.apache.lucene.analysis.Tokenizer;
import org.apache.lucene.analysis.email.UAX29URLEmailTokenizer;
import org.elasticsearch.plugin.NamedComponent;
import org.elasticsearch.plugin.analysis.TokenizerFactory;

/** `uax_url_email`: Lucene's UAX29URLEmailTokenizer with its defaults. Test-only (see README.md). */
@NamedComponent("uax_url_email")
public class UaxUrlEmailFactory implements TokenizerFactory {
    @Override
    public Tokenizer create() {
        return new UAX29URLEmailTokenizer();
    }
}
